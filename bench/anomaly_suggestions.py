"""Cost of the inhibition-rule suggestions (not part of the test suite).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/p3_bench .venv/bin/python \
        bench/anomaly_suggestions.py [--incidents 2000] [--effects 10]

`--incidents` incidents in the last 28 days, each a cause anomaly on one of 20 source
metrics and `--effects` effects on 50 target metrics (each with its rank-1 root-cause
row), as the scoring job stores them. Times `selectors.inhibition_rule_suggestions`, what
`GET anomaly/inhibition-rules/suggestions` and the admin's page answer with (best of
three), and, in the same process, the pure miner alone on the same links, as a share of
it: the rest is reading the links. The bench rows are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phase3.settings")

SOURCES, TARGETS = 20, 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--effects", type=int, default=10)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("bench/anomaly_suggestions.py needs DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    if args.incidents < 1 or args.effects < 1:
        print("--incidents and --effects must be >= 1", file=sys.stderr)
        return 2

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from anomalies.engine.dependency_mining import Link, suggest_dependencies
    from anomalies.models import Anomaly, RootCauseCandidate
    from anomalies.selectors import inhibition_rule_suggestions
    from telemetry.models import Series
    from telemetry.services import series_ensure

    call_command("migrate", verbosity=0)
    prefix = f"bench.suggestions.{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    now = timezone.now()
    try:
        sources = [
            series_ensure(name=f"{prefix}.src{k}", labels={"env": "prod"}) for k in range(SOURCES)
        ]
        targets = [
            series_ensure(name=f"{prefix}.tgt{k}", labels={"env": "prod", "pod": f"p{k}"})
            for k in range(TARGETS)
        ]
        onsets = [
            now - timedelta(minutes=float(m)) for m in rng.uniform(0, 27 * 1440, args.incidents)
        ]
        # Each source metric takes down its own few targets, so the pairs repeat.
        causes = Anomaly.objects.bulk_create(
            _closed(Anomaly, sources[i % SOURCES], at) for i, at in enumerate(onsets)
        )
        picks = [
            [targets[(c.series_id * 7 + j) % TARGETS] for j in range(args.effects)] for c in causes
        ]
        effects = Anomaly.objects.bulk_create(
            _closed(Anomaly, t, c.started_at + timedelta(minutes=2))
            for c, ts in zip(causes, picks, strict=True)
            for t in ts
        )
        RootCauseCandidate.objects.bulk_create(
            RootCauseCandidate(
                anomaly=e,
                series=causes[k // args.effects].series,
                cause_anomaly=causes[k // args.effects],
                rank=1,
                score=1.0,
                lead_seconds=120.0,
            )
            for k, e in enumerate(effects)
        )
        print(f"{args.incidents} incidents x {args.effects} effects = {len(effects)} links")
        best, answer = float("inf"), None
        for _ in range(3):
            began = time.perf_counter()
            answer = inhibition_rule_suggestions(now=now)
            best = min(best, time.perf_counter() - began)
        links = [
            Link(c.pk, e.pk, c.series.name, c.series.labels, e.series.name, e.series.labels, 120.0)
            for k, e in enumerate(effects)
            for c in [causes[k // args.effects]]
        ]
        counts = {t.name: 0 for t in targets}
        mined = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            suggest_dependencies(links, counts)
            mined = min(mined, time.perf_counter() - began)
        found = [s for s in answer["suggestions"] if s["source_series"].startswith(prefix)]
        print(f"  suggestions (read + mine): {1000 * best:8.1f} ms, {len(found)} pairs suggested")
        print(f"  the miner alone:           {1000 * mined:8.1f} ms ({mined / best:.2f} of it)")
    finally:
        Series.objects.filter(name__startswith=prefix).delete()
    return 0


def _closed(model, series, at):
    """A critical anomaly on `series` from `at`, over 28 minutes later."""
    return model(
        series=series,
        started_at=at,
        detected_at=at,
        last_seen_at=at,
        ended_at=at + timedelta(minutes=28),
        severity="critical",
        peak_score=0.9,
        peak_surprisal=12.0,
        peak_z=8.0,
        direction=1,
        observed=10.0,
        expected=1.0,
    )


if __name__ == "__main__":
    raise SystemExit(main())

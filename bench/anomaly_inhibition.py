"""Cost of inhibition rules in the response step (not part of the test suite).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/p3_bench .venv/bin/python \
        bench/anomaly_inhibition.py [--anomalies 2000]

A fleet-wide incident's `--anomalies` ongoing anomalies, one per series, are judged by one
paging playbook (`services.inhibition.Inhibition`, what every scoring run builds): without
a rule, with a rule as narrow as they usually are (`db.*` over `http.*`: one source), and
with the widest one (`*` over `*` with `equal: [env]`: every anomaly a source of every
other). Prints the best of five builds each and its ratio to the build without a rule, in
the same process. Then the same for the root-cause ranking of those anomalies, all opened
in one run (`services.causes.causes_rank_around`, best of three), where a rule is read as
a declared dependency. The bench rows are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phase3.settings")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anomalies", type=int, default=2000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("bench/anomaly_inhibition.py needs DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    if args.anomalies < 2:
        print("--anomalies must be >= 2", file=sys.stderr)
        return 2

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from anomalies.models import Anomaly, InhibitionRule, ResponsePlaybook
    from anomalies.services.causes import causes_rank_around
    from anomalies.services.inhibition import Inhibition
    from telemetry.models import Series
    from telemetry.services import series_ensure

    call_command("migrate", verbosity=0)
    prefix = f"bench.inhibition.{uuid.uuid4().hex[:8]}"
    now = timezone.now()
    try:
        db = series_ensure(name=f"{prefix}.db.connections", labels={"env": "prod"})
        series = [db] + [
            series_ensure(
                name=f"{prefix}.http.latency", labels={"env": "prod", "endpoint": f"/{k}"}
            )
            for k in range(args.anomalies - 1)
        ]
        Anomaly.objects.bulk_create(
            Anomaly(
                series=s,
                started_at=now,
                detected_at=now,
                last_seen_at=now,
                peak_score=0.9,
                peak_surprisal=12.0,
                peak_z=8.0,
                direction=1,
                observed=10.0,
                expected=1.0,
                severity="critical",
                # An hour of one-minute points, as an ongoing incident's anomaly holds.
                points=[[float(t), 10.0, 0.95] for t in range(60)],
            )
            for s in series
        )
        anomalies = list(
            Anomaly.objects.filter(series__name__startswith=prefix).select_related("series")
        )
        playbook = ResponsePlaybook.objects.create(
            name=prefix, series_name=f"{prefix}.*", action="email", target="oncall@example.com"
        )
        narrow = InhibitionRule(
            name=f"{prefix}.narrow",
            source_series=f"{prefix}.db.*",
            target_series=f"{prefix}.http.*",
        )
        wide = InhibitionRule(
            name=f"{prefix}.wide", source_series="*", target_series="*", equal=["env"]
        )
        InhibitionRule.objects.bulk_create([narrow, wide])

        def judge(rules: list) -> None:
            Inhibition(anomalies, [playbook], {}, rules=rules, now=now)

        opened = {a.pk for a in anomalies}
        rows = InhibitionRule.objects.filter(name__startswith=prefix)

        def rank(rules: list) -> None:
            causes_rank_around(opened)

        def enable_only(rules: list) -> None:
            rows.update(enabled=False)
            rows.filter(pk__in=[r.pk for r in rules]).update(enabled=True)

        cases = (
            ("no rule", []),
            ("narrow (db over http)", [narrow]),
            ("widest (* over *)", [wide]),
        )
        print(f"{len(anomalies)} ongoing anomalies, one paging playbook:")
        _table(cases, judge, repeats=5)
        print("their root-cause ranking, all opened in one run:")
        _table(cases, rank, repeats=3, before=enable_only)
    finally:
        ResponsePlaybook.objects.filter(name=prefix).delete()
        InhibitionRule.objects.filter(name__startswith=prefix).delete()
        Series.objects.filter(name__startswith=prefix).delete()
    return 0


def _table(cases, run, *, repeats: int, before=None) -> None:
    """Print the best of `repeats` calls of `run(rules)` for each case, and its ratio to the
    first case's (the baseline, in the same process)."""
    base = None
    for label, rules in cases:
        if before is not None:
            before(rules)
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            run(rules)
            times.append(time.perf_counter() - began)
        took = min(times)
        base = base or took
        ratio = "" if took is base else f"  ({took / base:.2f}x)"
        print(f"  {label:<22} {took * 1000:7.1f} ms{ratio}")


if __name__ == "__main__":
    raise SystemExit(main())

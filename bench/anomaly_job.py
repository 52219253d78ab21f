"""Speed of the scheduled anomaly job through the database (not part of the test suite).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/p3_bench .venv/bin/python \
        bench/anomaly_job.py [--series 2000] [--history 288]

What `anomalies.score_recent` costs each minute on PostgreSQL: `--series` series with
`--history` five-minute points each are scored once (warm states), then
1. a steady run: one new point per series (the usual minute), timed, queries counted;
2. the same with one brand-new series added, which brings a week of backfill (2,016
   points) into the same run;
3. a fleet-wide incident: every series jumps at once, then stays abnormal for three more
   runs (the root-cause step's worst case).
With `--playbook`, an e-mail playbook matching the bench series (one page per incident,
the default) is in place throughout, so the runs also queue the responses: the pages go
to the broker (`REDIS_URL`, or the embedded one), and the incident's effects are held
back behind its cause. With `--inhibition-rule` (and `--playbook`), an inhibition rule
as wide as they come is in place too: every bench series is a source and a target of
every other (the fleet-wide incident's worst case for `Inhibition._declare`). With
`--group-by` (and `--playbook`), the playbook groups by `service`, a label that splits the
bench series into 20 services (the fleet-wide incident then holds 20 groups). The bench
series, the playbook and the rule are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phase3.settings")

STEP = 300.0
SERVICES = 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--history", type=int, default=288)
    parser.add_argument("--playbook", action="store_true", help="queue responses too")
    parser.add_argument(
        "--inhibition-rule",
        action="store_true",
        help="with --playbook: every series holds back every other",
    )
    parser.add_argument(
        "--group-by",
        action="store_true",
        help="with --playbook: the playbook groups by the series' service label",
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("bench/anomaly_job.py needs DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    if args.series < 1 or args.history < 64:
        print("--series must be >= 1 and --history >= 64", file=sys.stderr)
        return 2

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from anomalies.models import InhibitionRule, ResponsePlaybook
    from anomalies.services import anomalies_score_recent
    from telemetry.bulk import insert_samples
    from telemetry.models import Series
    from telemetry.selectors import to_datetime
    from telemetry.services import series_ensure

    call_command("migrate", verbosity=0)
    prefix = f"bench.anomaly_job.{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    end = np.floor(time.time() / STEP) * STEP - 3600.0
    ts = end - STEP * np.arange(args.history)[::-1]
    series = [
        series_ensure(name=f"{prefix}.{k}", unit="ms", labels={"service": f"s{k % SERVICES}"})
        for k in range(args.series)
    ]
    ids = [s.pk for s in series]
    level = rng.uniform(10, 1000, args.series)
    if args.playbook:
        ResponsePlaybook.objects.create(
            name=prefix,
            series_name=f"{prefix}.*",
            action="email",
            target="oncall@example.com",
            group_by=["service"] if args.group_by else [],
        )
    if args.inhibition_rule:
        InhibitionRule.objects.create(
            name=prefix, source_series=f"{prefix}.*", target_series=f"{prefix}.*"
        )
    try:
        values = level[:, None] * (1 + 0.02 * rng.standard_normal((args.series, ts.size)))
        insert_samples(np.repeat(ids, ts.size), np.tile(ts, args.series), values.ravel())
        began = time.perf_counter()
        anomalies_score_recent(now=to_datetime(ts[-1]), series_ids=ids)
        print(f"warm-up: {args.series} series x {ts.size} points in "
              f"{time.perf_counter() - began:.1f}s")  # fmt: skip

        def minute(at: float, jump: float = 1.0, extra: list[int] | None = None) -> None:
            noise = 1 + 0.02 * rng.standard_normal(args.series)
            insert_samples(ids, np.full(args.series, at), level * noise * jump)
            run_ids = ids + (extra or [])
            queries = [0]

            def count(execute, sql, params, many, context):
                queries[0] += 1
                return execute(sql, params, many, context)

            with connection.execute_wrapper(count):
                began = time.perf_counter()
                counts = anomalies_score_recent(now=to_datetime(at), series_ids=run_ids)
                took = time.perf_counter() - began
            print(f"  {took:6.2f}s  {queries[0]:5d} queries  {counts}")

        print(f"1. steady minute, {args.series} series x 1 new point:")
        minute(ts[-1] + STEP)
        minute(ts[-1] + 2 * STEP)
        print("2. the same plus one new series with a week of backfill:")
        new = series_ensure(name=f"{prefix}.new", unit="ms")
        week = ts[-1] + 3 * STEP - STEP * np.arange(2016)[::-1]
        insert_samples([new.pk] * week.size, week, 100 + rng.standard_normal(week.size))
        minute(ts[-1] + 3 * STEP, extra=[new.pk])
        print("3. fleet-wide incident (every series x3), then three more minutes of it:")
        for k in range(4, 8):
            minute(ts[-1] + k * STEP, jump=3.0)
    finally:
        Series.objects.filter(name__startswith=prefix).delete()
        ResponsePlaybook.objects.filter(name=prefix).delete()
        InhibitionRule.objects.filter(name=prefix).delete()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

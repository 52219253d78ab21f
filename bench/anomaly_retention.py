"""Cost of the nightly anomaly-history retention (not part of the test suite).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/p3_bench .venv/bin/python \
        bench/anomaly_retention.py [--anomalies 20000] [--causes 10] [--batch-size 1000]

`--anomalies` closed anomalies that ended over the retention ago, each with `--causes`
root-cause rows and an execution, as the scoring job stores them. Times
`services.anomalies_enforce_retention` (batches of `--batch-size`, one short
transaction each), and, in the same process on a copy of the same history, one
`QuerySet.delete()` of them all in a single transaction: the baseline, which holds its
locks for the whole run. Prints rows deleted per second and the ratio. The bench rows are
deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phase3.settings")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anomalies", type=int, default=20_000)
    parser.add_argument("--causes", type=int, default=10, help="at most 49")
    parser.add_argument("--batch-size", type=int, default=1_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("bench/anomaly_retention.py needs DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    if args.anomalies < 1 or not 0 <= args.causes < 50 or args.batch_size < 1:
        print("--anomalies and --batch-size must be >= 1, --causes 0 to 49", file=sys.stderr)
        return 2

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from anomalies.models import Anomaly, ResponseExecution, ResponsePlaybook, RootCauseCandidate
    from anomalies.services import anomalies_enforce_retention, anomaly_retention_days
    from telemetry.models import Series
    from telemetry.services import series_ensure

    call_command("migrate", verbosity=0)
    ended = timezone.now() - timedelta(days=anomaly_retention_days() + 1)
    # The service deletes every expired anomaly of the database, not only the bench's.
    others = Anomaly.objects.filter(ended_at__lt=ended + timedelta(days=1)).exclude(
        status="false_positive"
    )
    if others.exists():
        print(
            f"{others.count()} anomalies there are past the retention already: run the bench "
            "on a database of its own",
            file=sys.stderr,
        )
        return 2
    prefix = f"bench.retention.{uuid.uuid4().hex[:8]}"
    playbook = ResponsePlaybook.objects.create(
        name=prefix, action="email", target="bench@example.com", enabled=False
    )
    rows_each = 1 + args.causes + 1

    def history() -> None:
        series = [series_ensure(name=f"{prefix}.s{k}") for k in range(50)]
        made = Anomaly.objects.bulk_create(
            Anomaly(
                series=series[i % 50],
                started_at=ended - timedelta(minutes=30),
                detected_at=ended - timedelta(minutes=30),
                last_seen_at=ended,
                ended_at=ended,
                status="resolved",
                severity="critical",
                peak_score=0.9,
                peak_surprisal=12.0,
                peak_z=8.0,
                direction=1,
                observed=10.0,
                expected=1.0,
            )
            for i in range(args.anomalies)
        )
        # One candidate per other series (a candidate names a series once per anomaly).
        RootCauseCandidate.objects.bulk_create(
            (
                RootCauseCandidate(
                    anomaly=a,
                    series=series[(i + r) % 50],
                    cause_anomaly=made[(i + r) % len(made)],
                    rank=r + 1,
                    score=1.0,
                    lead_seconds=0,
                )
                for i, a in enumerate(made)
                for r in range(args.causes)
            ),
            batch_size=10_000,
        )
        ResponseExecution.objects.bulk_create(
            ResponseExecution(playbook=playbook, anomaly=a, status="succeeded") for a in made
        )

    try:
        print(
            f"{args.anomalies} anomalies x (1 + {args.causes} causes + 1 execution) = "
            f"{args.anomalies * rows_each} rows, retention {settings.PHASE3_ANOMALY_RETENTION_DAYS} days"
        )
        history()
        began = time.perf_counter()
        once = Anomaly.objects.filter(series__name__startswith=prefix)
        with transaction.atomic():
            once.delete()
        baseline = time.perf_counter() - began
        history()
        began = time.perf_counter()
        counts = anomalies_enforce_retention(batch_size=args.batch_size, max_batches=10**9)
        batched = time.perf_counter() - began
        rows = args.anomalies * rows_each
        print(f"  one delete, one transaction: {baseline:7.2f} s ({rows / baseline:9.0f} rows/s)")
        print(
            f"  retention, batches of {args.batch_size:<5}:  {batched:7.2f} s "
            f"({rows / batched:9.0f} rows/s, {counts['batches']} transactions), "
            f"{batched / baseline:.2f}x the baseline"
        )
    finally:
        Series.objects.filter(name__startswith=prefix).delete()
        playbook.delete()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

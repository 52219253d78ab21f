"""Delete old anomaly history now (what beat runs nightly)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from anomalies.services import RetentionError, anomalies_enforce_retention


class Command(BaseCommand):
    help = (
        "Delete anomalies that ended more than PHASE3_ANOMALY_RETENTION_DAYS ago, with their "
        "executions and root-cause candidates; false positives are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1_000)
        parser.add_argument("--max-batches", type=int, default=100)

    def handle(self, *args, batch_size, max_batches, **options):
        if batch_size < 1 or max_batches < 1:
            raise CommandError("--batch-size and --max-batches must be at least 1")
        try:
            counts = anomalies_enforce_retention(batch_size=batch_size, max_batches=max_batches)
        except RetentionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Deleted {counts['anomalies']} anomalies that ended over {counts['days']} days "
            f"ago, with {counts['executions']} executions and {counts['causes']} root-cause "
            f"candidates ({counts['batches']} batches)."
        )

from django.core.management.base import BaseCommand, CommandError

from telemetry import conf
from telemetry.services import samples_enforce_retention


class Command(BaseCommand):
    help = "Delete raw samples older than PHASE3_RAW_RETENTION_DAYS whose hours are rolled up."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=20_000)
        parser.add_argument("--max-batches", type=int, default=500)

    def handle(self, *args, batch_size, max_batches, **options):
        if batch_size < 1 or max_batches < 1:
            raise CommandError("--batch-size and --max-batches must be at least 1")
        counts = samples_enforce_retention(batch_size=batch_size, max_batches=max_batches)
        self.stdout.write(
            f"Deleted {counts['deleted']} raw samples of {counts['series']} series "
            f"older than {conf.raw_retention_days()} days ({counts['batches']} batches)."
        )

"""Recompute experiment results now (the hourly job's CLI face)."""

from django.core.management.base import BaseCommand, CommandError

from personalization import services
from personalization.models import Experiment


class Command(BaseCommand):
    help = "Recompute results of every running experiment, or of one with --key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--key", help="one experiment's key (any status)")

    def handle(self, *args, key: str | None, **options) -> None:
        if key:
            experiment = Experiment.objects.filter(key=key).first()
            if experiment is None:
                raise CommandError(f"no experiment with key {key!r}")
            counts = services.experiment_results_recompute(experiment_id=experiment.pk)
        else:
            counts = services.experiments_results_recompute()
        self.stdout.write(self.style.SUCCESS(f"experiment results: {counts}"))

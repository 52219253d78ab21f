"""Run the scheduled scoring job now (what beat runs every minute)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from anomalies.services import anomalies_score_recent, learned_model_retrain


class Command(BaseCommand):
    help = "Score all series' new points; --retrain also refits the learned model afterwards."

    def add_arguments(self, parser):
        parser.add_argument("--series", type=int, nargs="*", help="Only these series ids.")
        parser.add_argument("--retrain", action="store_true")

    def handle(self, *args, series=None, retrain=False, **options):
        if series is not None and any(s <= 0 for s in series):
            raise CommandError("--series takes positive ids")
        counts = anomalies_score_recent(series_ids=series)
        self.stdout.write(" ".join(f"{k}={v}" for k, v in counts.items()))
        if retrain:
            self.stdout.write(" ".join(f"{k}={v}" for k, v in learned_model_retrain().items()))

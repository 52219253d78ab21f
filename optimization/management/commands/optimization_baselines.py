"""manage.py optimization_baselines: recompute hour-of-week baselines and trends now."""

from django.core.management.base import BaseCommand, CommandError

from optimization.services import baselines_recompute


class Command(BaseCommand):
    help = "Recompute the baselines of the watched series (all, or --series ids)."

    def add_arguments(self, parser):
        parser.add_argument("--series", type=int, nargs="*", help="series ids (default: all)")
        parser.add_argument("--days", type=int, default=28, help="window in days (default 28)")

    def handle(self, *args, series=None, days=28, **options):
        if days < 1:
            raise CommandError("--days must be at least 1")
        counts = baselines_recompute(series_ids=series, window_days=days)
        self.stdout.write(self.style.SUCCESS(f"baselines: {counts}"))

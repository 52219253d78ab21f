"""Recompute behaviour profiles and personas now (the daily job's CLI face)."""

from django.core.management.base import BaseCommand, CommandError

from personalization import services


class Command(BaseCommand):
    help = "Recompute every active user's profile and persona from the last --days of events."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=28, help="event window (default 28)")

    def handle(self, *args, days: int, **options) -> None:
        if not 1 <= days <= 365:
            raise CommandError("--days must be between 1 and 365")
        counts = services.profiles_recompute(days=days)
        self.stdout.write(self.style.SUCCESS(f"profiles recomputed: {counts}"))

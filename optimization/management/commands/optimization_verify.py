"""manage.py optimization_verify: measure realised impact of applied recommendations."""

from django.core.management.base import BaseCommand, CommandError

from optimization.services import recommendations_verify


class Command(BaseCommand):
    help = "Verify claimed recommendations applied at least --min-hours ago (default 24)."

    def add_arguments(self, parser):
        parser.add_argument("--min-hours", type=float, default=24.0)

    def handle(self, *args, min_hours=24.0, **options):
        if min_hours < 0:
            raise CommandError("--min-hours must not be negative")
        self.stdout.write(str(recommendations_verify(min_hours_after=min_hours)))

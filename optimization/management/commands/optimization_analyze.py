"""manage.py optimization_analyze: run and store the analysis now, print its summary."""

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from optimization.models import Recommendation
from optimization.services import analysis_run


class Command(BaseCommand):
    help = "Compute health, bottlenecks and recommendations for the current hour and store them."

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=float, default=24.0, help="analysis window (hours)")
        parser.add_argument("--at", help="ISO time to analyse at (default: now)")

    def handle(self, *args, hours=24.0, at=None, **options):
        if hours <= 0:
            raise CommandError("--hours must be positive")
        now = None
        if at:
            try:
                now = datetime.fromisoformat(at)
            except ValueError as exc:
                raise CommandError(f"--at: not an ISO datetime: {at!r}") from exc
            if timezone.is_naive(now):
                now = timezone.make_aware(now, timezone.UTC)
        report = analysis_run(now=now, window_hours=hours)
        health = report.health
        self.stdout.write(f"analysis at {report.at:%Y-%m-%d %H:%M} UTC")
        if health:
            self.stdout.write(f"health score {health.score:.1f}")
            for part, figures in health.breakdown.items():
                self.stdout.write(
                    f"  {part:<12} -{figures['points_lost']:.1f}  {figures['explanation']}"
                )
        open_recs = Recommendation.objects.filter(state__in=Recommendation.OPEN_STATES)
        self.stdout.write(
            f"recommendations seen {report.recommendations_seen}, "
            f"new {report.recommendations_created}, open {open_recs.count()}"
        )
        for rec in sorted(open_recs, key=lambda r: r.expected_value, reverse=True)[:10]:
            self.stdout.write(
                f"  [{rec.category}] {rec.title}  conf {rec.confidence:.2f}  "
                f"~{rec.predicted_ms_saved_per_day / 1000:.0f} s/day"
            )

from django.core.management.base import BaseCommand, CommandError

from telemetry.services import rollups_update


class Command(BaseCommand):
    help = "Summarise closed hours of every series into hourly rollups (what the schedule runs)."

    def add_arguments(self, parser):
        parser.add_argument("--window-hours", type=int, default=24)
        parser.add_argument("--max-windows", type=int, default=30,
                            help="windows per run; run again (or --until-done) to catch up")  # fmt: skip
        parser.add_argument("--until-done", action="store_true")

    def handle(self, *args, window_hours, max_windows, until_done, **options):
        if window_hours < 1 or max_windows < 1:
            raise CommandError("--window-hours and --max-windows must be at least 1")
        total = {"windows": 0, "hours": 0, "rollups": 0}
        while True:
            counts = rollups_update(window_hours=window_hours, max_windows=max_windows)
            for key in total:
                total[key] += counts[key]
            if not until_done or not counts["pending"] or not counts["windows"]:
                break
        self.stdout.write(
            f"Rolled up {total['hours']} hours into {total['rollups']} rollup rows "
            f"({total['windows']} windows); {counts['pending']} hours pending."
        )

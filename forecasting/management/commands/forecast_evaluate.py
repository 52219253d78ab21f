"""``manage.py forecast_evaluate PATH ...``: the engine vs the seasonal naive on CSV series."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from forecasting.engine import evaluate


class Command(BaseCommand):
    help = evaluate.__doc__.splitlines()[0]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--horizon-hours", type=float, default=24.0)
        parser.add_argument("--origins", type=int, default=3)
        parser.add_argument("--jobs", type=int, default=1)
        parser.add_argument("--prophet", action="store_true")

    def handle(self, *args, paths, horizon_hours, origins, jobs, prophet, **options) -> None:
        argv = [*paths, "--horizon-hours", str(horizon_hours), "--origins", str(origins),
                "--jobs", str(jobs), *(["--prophet"] if prophet else [])]  # fmt: skip
        code = evaluate.main(argv)
        if code:
            raise CommandError("evaluation failed (see above)")

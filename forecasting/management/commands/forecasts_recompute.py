"""``manage.py forecasts_recompute [--type T] [--horizon H ...]``: forecasts in this process."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from forecasting import services
from forecasting.models import HORIZONS, PredictionType


class Command(BaseCommand):
    help = "Recompute forecasts now, in this process (the scheduler fans out over workers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--type", choices=PredictionType.values, dest="prediction_type")
        parser.add_argument(
            "--horizon", type=int, action="append", choices=sorted(HORIZONS), dest="horizons"
        )

    def handle(self, *args, prediction_type=None, horizons=None, **options) -> None:
        try:
            counts = services.forecasts_recompute(
                prediction_type=prediction_type, horizons=horizons
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(counts, indent=2))

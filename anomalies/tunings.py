"""Which detection tuning applies to a series (the scoring job, and the admin that shows it)."""

from __future__ import annotations

import logging

from telemetry.models import Series

from .engine import Tuning
from .matching import series_matches
from .models import DetectionTuning
from .validation import tuning_errors

logger = logging.getLogger(__name__)


def usable_tunings() -> list[DetectionTuning]:
    """Enabled tunings the engine can apply; a row written from a shell with a choice the
    engine does not know is skipped with a warning rather than failing every series."""
    usable = []
    for t in DetectionTuning.objects.filter(enabled=True):
        errors = tuning_errors(labels=t.labels)
        try:
            engine_tuning(t)
        except ValueError as exc:  # the engine's own check of the choices
            errors["choices"] = [str(exc)]
        if errors:
            logger.warning("detection tuning %r skipped: %s", t.name, errors)
        else:
            usable.append(t)
    return usable


def tuning_of(series: Series, tunings: list[DetectionTuning]) -> DetectionTuning | None:
    """The most specific tuning matching the series: its own name over a pattern over any
    series, then more labels over fewer, then the first name in order."""
    matching = [
        t for t in tunings if series_matches(t.series_name, t.labels, series.name, series.labels)
    ]
    if not matching:
        return None

    def specificity(t: DetectionTuning) -> tuple[int, int]:
        named = 2 if t.series_name == series.name else int(bool(t.series_name))
        return (-named, -len(t.labels or {}))

    return min(matching, key=lambda t: (*specificity(t), t.name))


def engine_tuning(tuning: DetectionTuning | None) -> Tuning | None:
    return None if tuning is None else Tuning(tuning.sensitivity, tuning.direction)

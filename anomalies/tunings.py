"""Which detection tuning applies to a series (the scoring job, and the admin that shows it)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
from django.utils import timezone

from telemetry.models import Series
from telemetry.selectors import series_points, to_datetime

from .engine import Tuning
from .engine.tuning import SENSITIVITIES
from .engine.tuning_preview import TuningReplay, replay_tunings
from .matching import most_specific
from .models import DetectionTuning
from .selectors import series_matching
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
    """The most specific tuning matching the series (`matching.most_specific`)."""
    return most_specific(tunings, series.name, series.labels)


def engine_tuning(tuning: DetectionTuning | None) -> Tuning | None:
    return None if tuning is None else Tuning(tuning.sensitivity, tuning.direction)


# A preview replays every series it shows from a fresh detector, time step by time step
# (about 0.6 ms a step however many series are in the pass): at these caps a one-minute
# series takes about 15 s, a five-minute one about 3 s.
TUNING_PREVIEW_MAX_SERIES = 5
TUNING_PREVIEW_MAX_DAYS = 14
TUNING_PREVIEW_MAX_POINTS = 20_160  # per series: two weeks of one-minute points
TUNING_PREVIEW_MAX_ALERTS = 50  # listed per series (all are counted)
# History read before the window, so that the replay ranks the window's points against
# about what the live detector has seen (a fresh one cannot alert on rank alone for its
# first few hundred points, and learns the weekly profile in a week).
TUNING_PREVIEW_WARMUP = timedelta(days=7)


def tuning_preview(
    candidate: DetectionTuning, *, days: int = 7, now: datetime | None = None
) -> dict:
    """What a tuning would have changed over the last `days`, before it is saved.

    `candidate` is the tuning as it would be saved (unsaved, or a saved row). It applies
    where the scoring job would apply it: to the series it matches on which no more
    specific tuning wins (`tuning_of`, with it in place of a saved tuning of the same
    name). Each of them is replayed from a fresh detector under the tuning it has now,
    under this one, and under the three sensitivities in this direction
    (`engine.tuning_preview`), so the operator sees where this one sits among them.
    """
    proposed = engine_tuning(candidate)  # ValueError: a choice the engine lacks
    name, direction = candidate.name, candidate.direction
    now = now or timezone.now()
    since = now - timedelta(days=days)
    usable = usable_tunings()
    others = [t for t in usable if t.name != name]
    matched = series_matching(candidate.series_name, candidate.labels or {})
    applies = [s for s in matched if tuning_of(s, [*others, candidate]) is candidate]
    shown = applies[:TUNING_PREVIEW_MAX_SERIES]
    current = {s.pk: tuning_of(s, usable) for s in shown}
    replayed = [Tuning(x, direction) for x in SENSITIVITIES]
    extra = {engine_tuning(t) for t in current.values() if t is not None} - {*replayed}
    if any(t is None for t in current.values()) and Tuning() not in replayed:
        extra.add(Tuning())
    replayed += sorted(extra, key=lambda t: (t.sensitivity, t.direction))
    history = []
    for s in shown:
        points = series_points(
            s.pk,
            start=since - TUNING_PREVIEW_WARMUP,
            end=now + timedelta(microseconds=1),
            past_raw_from_rollups=False,
        )
        history.append(
            (points.ts[-TUNING_PREVIEW_MAX_POINTS:], points.values[-TUNING_PREVIEW_MAX_POINTS:])
        )
    results = replay_tunings(
        history, replayed, since=since.timestamp(), limit=TUNING_PREVIEW_MAX_ALERTS
    )
    rows = [
        _preview_row(
            s, ts, since, current[s.pk], proposed, dict(zip(replayed, replays, strict=True))
        )
        for s, (ts, _), replays in zip(shown, history, results, strict=True)
    ]
    rows.sort(key=lambda r: (-r["alerts"], -r["alerts_now"]))  # stable: then by name
    answer = {
        "since": since,
        "until": now,
        "days": days,
        "sensitivity": candidate.sensitivity,
        "direction": direction,
        "series_matched": len(matched),
        "series_shadowed": len(matched) - len(applies),
        "series_previewed": len(rows),
        "capped": len(applies) > len(rows),
        "alerts": sum(r["alerts"] for r in rows),
        "alerts_now": sum(r["alerts_now"] for r in rows),
        "series": rows,
    }
    if answer["capped"]:
        answer["note"] = (
            f"the tuning applies to {len(applies)} series; only the first "
            f"{len(rows)} by name were replayed (at most {TUNING_PREVIEW_MAX_SERIES}): narrow "
            "the pattern or the labels to see the others"
        )
    return answer


def _preview_row(
    series: Series,
    ts: np.ndarray,
    since: datetime,
    current: DetectionTuning | None,
    proposed: Tuning,
    replays: dict[Tuning, TuningReplay],
) -> dict:
    now_tuning = engine_tuning(current) or Tuning()
    warmup = int((ts < since.timestamp()).sum())
    return {
        "series_id": series.pk,
        "series": str(series),
        "points": int(ts.size - warmup),
        "warmup_points": warmup,
        "tuning_now": current.name if current is not None else None,
        "sensitivity_now": now_tuning.sensitivity,
        "direction_now": now_tuning.direction,
        "alerts_now": replays[now_tuning].count,
        "alerts": replays[proposed].count,
        "by_sensitivity": {
            t.sensitivity: r.count for t, r in replays.items() if t.direction == proposed.direction
        },
        "alert_points": [
            {
                "at": to_datetime(a.at),
                "score": a.score,
                "observed": a.observed,
                "expected": a.expected,
                "direction": a.direction,
            }
            for a in replays[proposed].alerts
        ],
    }

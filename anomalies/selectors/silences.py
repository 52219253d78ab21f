"""Silences in force: which of them mute an anomaly now."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from ..models import (
    Anomaly,
    Silence,
)


def silence_in_force(at: datetime) -> Q:
    """The condition for a silence to be in force at `at`, for filter() or exclude().

    A recurring silence is in force only in its window (`Silence.is_active`), which SQL
    does not read: the silences between their start and end are judged in Python (few at
    any time), one query."""
    return Q(pk__in=[s.pk for s in silences_active(at)])


def silences_active(at: datetime) -> list[Silence]:
    """The silences in force at `at`; few at any time, so callers match them in Python."""
    return [s for s in silences_overlapping(since=at, until=at) if s.is_active(at)]


def silences_overlapping(*, since: datetime, until: datetime) -> list[Silence]:
    """The silences between their start and end at some moment of [since, until]: those
    that may mute something then (a recurring one, only in its window: `is_active`)."""
    return list(Silence.objects.filter(starts_at__lte=until, ends_at__gt=since))


def silenced_by(anomaly: Anomaly, silences: list[Silence], at: datetime) -> list[int]:
    """Ids of the silences among `silences` that mute this anomaly at `at`.

    An ongoing anomaly is muted by a silence in force at `at`; one that has ended, by a
    silence that was in force when it ended: an incident that ended under a silence is
    never announced (a "resolved" message for an alert nobody was sent would only
    confuse the receiver), and one that ended before the silence began is not its
    business.
    """
    series = anomaly.series
    moment = at if anomaly.ended_at is None else anomaly.ended_at
    return [s.pk for s in silences if s.is_active(moment) and s.matches(series.name, series.labels)]

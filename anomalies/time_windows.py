"""Recurring windows of a silence: which days and hours of the week it mutes.

Alertmanager's `time_intervals` (`weekdays`, `times`, `location`) and Datadog's recurring
downtimes: a nightly backup or a weekly maintenance is one silence, not one typed every
night. Pure: datetimes in, booleans out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def in_recurring_window(
    at: datetime,
    *,
    weekdays: Sequence[str],
    start: time | None,
    end: time | None,
    time_zone: str,
) -> bool:
    """Whether `at` falls in the window: on one of `weekdays` (none: every day), from
    `start` to `end` local time in `time_zone` (none: the whole day). A window whose end is
    at or before its start runs past midnight, and belongs to the day it starts on: Friday
    22:00-02:00 mutes Saturday 01:00 and not Friday 01:00."""
    local = at.astimezone(ZoneInfo(time_zone))
    if start is None or end is None:
        return _on(local, weekdays)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        return _on(local, weekdays) and start <= clock < end
    return (_on(local, weekdays) and clock >= start) or (
        _on(local - timedelta(days=1), weekdays) and clock < end
    )


def _on(local: datetime, weekdays: Sequence[str]) -> bool:
    return not weekdays or WEEKDAYS[local.weekday()] in weekdays

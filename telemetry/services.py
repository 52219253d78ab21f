"""Writes of telemetry. Ingestion is bulk and idempotent on (series, ts)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction

from .models import Event, Sample, Series, labels_key


def series_ensure(
    *,
    name: str,
    labels: dict | None = None,
    unit: str = "",
    kind: str = "gauge",
    description: str = "",
    importance: float | None = None,
) -> Series:
    labels = labels or {}
    defaults = {"labels": labels, "unit": unit, "kind": kind, "description": description}
    if importance is not None:
        defaults["importance"] = importance
    series, _ = Series.objects.get_or_create(
        name=name, labels_key=labels_key(labels), defaults=defaults
    )
    return series


@transaction.atomic
def samples_write(*, series: Series, points: Iterable[tuple[datetime, float]]) -> int:
    """Write points of one series, keeping existing (series, ts) rows: re-sending changes nothing."""
    objs = [Sample(series=series, ts=ts, value=float(v)) for ts, v in points]
    Sample.objects.bulk_create(objs, batch_size=5000, ignore_conflicts=True)
    return len(objs)


@transaction.atomic
def events_write(*, events: Iterable[Event]) -> int:
    objs = list(events)
    Event.objects.bulk_create(objs, batch_size=5000, ignore_conflicts=True)
    return len(objs)

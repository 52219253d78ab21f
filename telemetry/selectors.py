"""Reads of telemetry. The six systems read series as numpy arrays through these functions.

Timestamps come back as float64 epoch seconds (UTC): engines do arithmetic on them and
never need a timezone object.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from django.db.models import Count, Max, Min, QuerySet
from django.utils import timezone

from .models import Event, Sample, Series, labels_key


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), tz=UTC)


def series_get(name: str, labels: dict | None = None) -> Series | None:
    return Series.objects.filter(name=name, labels_key=labels_key(labels)).first()


def series_list(
    *, name: str | None = None, name_prefix: str | None = None, labels: dict | None = None
) -> QuerySet[Series]:
    qs = Series.objects.all()
    if name:
        qs = qs.filter(name=name)
    if name_prefix:
        qs = qs.filter(name__startswith=name_prefix)
    for key, value in (labels or {}).items():
        qs = qs.filter(labels_key__regex=rf"(^|,){_re(key)}={_re(str(value))}(,|$)")
    return qs


def _re(text: str) -> str:
    import re

    return re.escape(text)


def _range(qs, start: datetime | None, end: datetime | None):
    if start is not None:
        qs = qs.filter(ts__gte=start)
    if end is not None:
        qs = qs.filter(ts__lt=end)
    return qs


def series_values(
    series_id: int, start: datetime | None = None, end: datetime | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All samples of a series in [start, end), oldest first."""
    rows = _range(Sample.objects.filter(series_id=series_id), start, end).order_by("ts")
    pairs = list(rows.values_list("ts", "value"))
    if not pairs:
        return np.empty(0), np.empty(0)
    ts = np.fromiter((p[0].timestamp() for p in pairs), dtype=np.float64, count=len(pairs))
    values = np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))
    return ts, values


def resample(
    ts: np.ndarray,
    values: np.ndarray,
    *,
    step_seconds: float,
    agg: str = "mean",
    origin: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate onto a regular grid of ``step_seconds``; empty buckets are dropped."""
    if ts.size == 0:
        return ts, values
    origin = float(np.floor(ts[0] / step_seconds) * step_seconds) if origin is None else origin
    bucket = np.floor((ts - origin) / step_seconds).astype(np.int64)
    uniq, inverse = np.unique(bucket, return_inverse=True)
    if agg == "mean":
        out = np.bincount(inverse, weights=values) / np.bincount(inverse)
    elif agg == "sum":
        out = np.bincount(inverse, weights=values)
    elif agg in ("max", "min", "last"):
        out = np.full(uniq.size, np.nan)
        order = np.argsort(ts, kind="stable")
        if agg == "last":
            out[inverse[order]] = values[order]
        else:
            fn = np.maximum if agg == "max" else np.minimum
            out = np.full(uniq.size, -np.inf if agg == "max" else np.inf)
            fn.at(out, inverse, values)
    else:
        raise ValueError(f"unknown aggregation {agg!r}")
    return origin + uniq.astype(np.float64) * step_seconds, out


def series_values_resampled(
    series_id: int,
    start: datetime | None,
    end: datetime | None,
    step_seconds: float,
    agg: str = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    ts, values = series_values(series_id, start, end)
    origin = (
        None if start is None else float(np.floor(start.timestamp() / step_seconds)) * step_seconds
    )
    return resample(ts, values, step_seconds=step_seconds, agg=agg, origin=origin)


def series_latest(series_id: int) -> tuple[float, float] | None:
    row = (
        Sample.objects.filter(series_id=series_id)
        .order_by("-ts")
        .values_list("ts", "value")
        .first()
    )
    return (row[0].timestamp(), row[1]) if row else None


def events_queryset(
    *, start: datetime | None = None, end: datetime | None = None, names: list[str] | None = None
) -> QuerySet[Event]:
    qs = _range(Event.objects.all(), start, end)
    if names:
        qs = qs.filter(name__in=names)
    return qs


def events_frame(
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    names: list[str] | None = None,
    with_properties: bool = True,
) -> dict[str, np.ndarray]:
    """Events as columns (user_id, name, ts epoch seconds, session_id[, properties])."""
    fields = ["user_id", "name", "ts", "session_id"] + (["properties"] if with_properties else [])
    rows = list(
        events_queryset(start=start, end=end, names=names).order_by("ts").values_list(*fields)
    )
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
    frame = {
        "user_id": np.array(cols[0], dtype=object),
        "name": np.array(cols[1], dtype=object),
        "ts": np.array([t.timestamp() for t in cols[2]], dtype=np.float64),
        "session_id": np.array(cols[3], dtype=object),
    }
    if with_properties:
        frame["properties"] = np.array(cols[4], dtype=object)
    return frame


def telemetry_summary() -> dict:
    """Volume and freshness of telemetry, for the overview."""
    samples = Sample.objects.aggregate(n=Count("id"), first=Min("ts"), last=Max("ts"))
    events = Event.objects.aggregate(n=Count("id"), last=Max("ts"))
    last = samples["last"]
    return {
        "series": Series.objects.count(),
        "samples": samples["n"],
        "samples_first_at": samples["first"],
        "samples_last_at": last,
        "samples_fresh": bool(last and timezone.now() - last < timedelta(minutes=15)),
        "events": events["n"],
        "events_last_at": events["last"],
        "users": Event.objects.values("user_id").distinct().count(),
    }

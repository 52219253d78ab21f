"""Reads of telemetry. The six systems read series as numpy arrays through these functions.

Timestamps come back as float64 epoch seconds (UTC): engines do arithmetic on them and
never need a timezone object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import connection
from django.db.models import Count, Max, Min, OuterRef, QuerySet, Subquery
from django.utils import timezone

from . import conf
from .downsample import AGGREGATIONS, Partials, finish, merge_partials, partials_from_samples
from .models import (
    ChangeEvent,
    Event,
    RollupState,
    Sample,
    SampleRollup,
    Series,
    labels_key,
    labels_normalize,
)


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), tz=UTC)


def series_get(name: str, labels: dict | None = None) -> Series | None:
    """The series of exactly these labels; ``{"env": ""}`` is the same as no ``env`` label."""
    return Series.objects.filter(name=name, labels_key=labels_key(labels)).first()


def series_list(
    *, name: str | None = None, name_prefix: str | None = None, labels: dict | None = None
) -> QuerySet[Series]:
    """Series carrying these labels (and maybe others).

    As in Prometheus, ``{"env": ""}`` selects the series *without* an ``env`` label: an empty
    value is no label (``labels_normalize``). A series stored before that rule with an empty
    value in its key (``env=``; see docs/telemetry.md) counts as lacking the label too.
    """
    qs = Series.objects.all()
    if name:
        qs = qs.filter(name=name)
    if name_prefix:
        qs = qs.filter(name__startswith=name_prefix)
    given = labels or {}
    for key, value in labels_normalize(given).items():
        qs = qs.filter(labels_key__regex=rf"(^|,){_re(key)}={_re(str(value))}(,|$)")
    for key in given.keys() - labels_normalize(given).keys():
        qs = qs.exclude(labels_key__regex=rf"(^|,){_re(key)}=[^,]")
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
    series_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of a series in [start, end), oldest first (at most ``limit`` of them).

    On PostgreSQL the database converts timestamps to epoch floats, so no datetime object
    is built per row: a month of one-minute samples comes back in milliseconds.
    """
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT extract(epoch FROM ts)::float8, value FROM {Sample._meta.db_table} "
            "WHERE series_id = %s"
        )
        params: list = [series_id]
        if start is not None:
            sql += " AND ts >= %s"
            params.append(start)
        if end is not None:
            sql += " AND ts < %s"
            params.append(end)
        sql += " ORDER BY ts"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            pairs = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()
    rows = _range(Sample.objects.filter(series_id=series_id), start, end).order_by("ts")
    pairs = list(
        rows.values_list("ts", "value")[:limit]
        if limit is not None
        else rows.values_list("ts", "value")
    )
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
    partials = partials_from_samples(ts, values, step=step_seconds, origin=origin)
    return finish(partials, agg)


def series_values_since(
    starts: dict[int, datetime], end: datetime
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Samples of many series, each from its own start up to `end` (exclusive), oldest first.

    The anomaly job reads every series' new points each minute: one query for all of them
    on PostgreSQL instead of one per series (2,000 series: 2,000 round trips).
    """
    out = {sid: (np.empty(0), np.empty(0)) for sid in starts}
    if not starts:
        return out
    if connection.vendor != "postgresql":
        return {sid: series_values(sid, start=start, end=end) for sid, start in starts.items()}
    ids, begins = zip(*starts.items(), strict=True)
    sql = (
        f"SELECT s.series_id, extract(epoch FROM s.ts)::float8, s.value "
        f"FROM {Sample._meta.db_table} s "
        "JOIN unnest(%s::bigint[], %s::timestamptz[]) AS w(series_id, start) "
        "ON s.series_id = w.series_id AND s.ts >= w.start "
        "WHERE s.ts < %s ORDER BY s.series_id, s.ts"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(ids), list(begins), end])
        rows = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 3)
    if rows.size:
        cuts = np.flatnonzero(np.diff(rows[:, 0])) + 1
        for block in np.split(rows, cuts):
            out[int(block[0, 0])] = (block[:, 1].copy(), block[:, 2].copy())
    return out


def series_values_resampled(
    series_id: int,
    start: datetime | None,
    end: datetime | None,
    step_seconds: float,
    agg: str = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    """Aggregated onto a grid of ``step_seconds``; empty buckets are dropped.

    Whole-hour steps with start and end given read hourly rollups for the part they
    cover (and so still see history older than the raw retention window).
    """
    if start is not None and end is not None and agg in AGGREGATIONS:
        # one grid for the engines: no hourly points past the raw retention for a finer step
        points = series_points(
            series_id,
            start=start,
            end=end,
            step_seconds=step_seconds,
            agg=agg,
            past_raw_from_rollups=False,
        )
        return points.ts, points.values
    ts, values = series_values(series_id, start, end)
    origin = (
        None if start is None else float(np.floor(start.timestamp() / step_seconds)) * step_seconds
    )
    return resample(ts, values, step_seconds=step_seconds, agg=agg, origin=origin)


@dataclass(frozen=True)
class SeriesPoints:
    ts: np.ndarray  # epoch seconds (bucket starts when downsampled)
    values: np.ndarray
    source: str  # "raw", "rollup" or "rollup+raw": where the figures were read from
    #: raw samples are complete from this moment on (None: none deleted yet); before it only
    #: hourly rollups are sure to exist (``raw_kept_from``)
    raw_from: datetime | None = None
    #: bucket width (seconds) of the points before ``raw_from``, read from rollups (None:
    #: no point came from rollups); coarser than the step asked for when that is under an
    #: hour or not a whole number of hours
    rollup_step: float | None = None


def rollup_horizon() -> datetime | None:
    """Rollups are complete and current before this moment; raw samples hold the rest."""
    state = RollupState.objects.filter(step_seconds=3600).values_list("rolled_until", "dirty_from")
    row = state.first()
    return None if not row else horizon_of(*row)


def raw_kept_from(horizon: datetime | None, *, now: datetime | None = None) -> datetime | None:
    """From when raw samples are complete: the raw retention's cutoff, or the rollup horizon
    if rollups lag further behind (retention deletes nothing not yet rolled up).

    Before it, raw samples may be deleted and hourly rollups hold the data. None when
    nothing has been rolled up yet, so nothing was deleted either.
    """
    if horizon is None:
        return None
    return min(raw_retention_cutoff(now or timezone.now()), horizon)


def raw_retention_cutoff(now: datetime) -> datetime:
    """Raw samples before this hour may be deleted (whole hours, never half an hour)."""
    cutoff = now - timedelta(days=conf.raw_retention_days())
    return cutoff.replace(minute=0, second=0, microsecond=0)


def horizon_of(rolled_until: datetime | None, dirty_from: datetime | None) -> datetime | None:
    """The horizon of one rollup state's marks (the hour before which it is complete)."""
    if rolled_until is None:
        return None
    marks = [m for m in (rolled_until, dirty_from) if m is not None]
    return min(marks).replace(minute=0, second=0, microsecond=0)


def lag_hours(horizon: datetime | None, now: datetime) -> float | None:
    """Hours from a rollup horizon to the last closed hour (None: nothing rolled up yet)."""
    closed = now.replace(minute=0, second=0, microsecond=0)
    return None if horizon is None else max(0.0, (closed - horizon) / timedelta(hours=1))


def series_rollup_partials(series_id: int, start: datetime, end: datetime) -> Partials:
    rows = list(
        SampleRollup.objects.filter(series_id=series_id, bucket__gte=start, bucket__lt=end)
        .order_by("bucket")
        .values_list("bucket", "count", "sum", "min", "max")
    )
    if not rows:
        return Partials.empty()
    buckets, counts, sums, lows, highs = zip(*rows, strict=True)
    return Partials(
        start=np.array([b.timestamp() for b in buckets]),
        count=np.array(counts, dtype=np.float64),
        sum=np.array(sums, dtype=np.float64),
        min=np.array(lows, dtype=np.float64),
        max=np.array(highs, dtype=np.float64),
    )


def series_points(
    series_id: int,
    *,
    start: datetime,
    end: datetime,
    step_seconds: float | None = None,
    agg: str = "mean",
    limit: int | None = None,
    past_raw_from_rollups: bool = True,
) -> SeriesPoints:
    """Samples of [start, end), raw or downsampled to ``step_seconds`` buckets.

    Downsampled, ``start`` is aligned down to a multiple of the step (epoch-based, UTC).

    With a whole-hour step the stretch before the rollup horizon is read from hourly
    rollups (24 rows a day instead of 1,440 at one-minute sampling) and the rest from raw
    samples; partials combine exactly, so the figures equal a raw downsampling.

    A raw read or a finer step reaching back before ``raw_kept_from`` (where raw samples
    are deleted) gets that part from the hourly rollups, in hourly buckets (or the step
    rounded up to whole hours), as Datadog or a downsampling Prometheus answer: it used to
    be a silent gap. ``raw_from`` and ``rollup_step`` in the answer say where and how
    coarse. ``past_raw_from_rollups=False`` keeps the gap, for callers that need one grid.
    ``limit`` caps the points of a raw read (rolled-up ones included).
    """
    horizon = rollup_horizon()
    raw_from = raw_kept_from(horizon)
    if step_seconds is not None and step_seconds % 3600 == 0:
        return _points_on_hour_grid(series_id, start, end, step_seconds, agg, horizon, raw_from)
    if not past_raw_from_rollups or raw_from is None or start >= raw_from:
        return _points_from_raw(series_id, start, end, step_seconds, agg, limit, raw_from)
    # Before raw_from: hourly rollups, on a grid of whole hours (an hour cannot be split).
    coarse = 3600.0 if step_seconds is None else math.ceil(step_seconds / 3600) * 3600.0
    old_origin = math.floor(start.timestamp() / coarse) * coarse
    old_end = min(raw_from, end)
    hour = old_end.replace(minute=0, second=0, microsecond=0)
    old_end = old_end if hour == old_end else hour + timedelta(hours=1)  # last hour whole
    rollups = series_rollup_partials(series_id, to_datetime(old_origin), old_end)
    old_ts, old_values = finish(merge_partials([rollups], step=coarse, origin=old_origin), agg)
    if end <= raw_from:
        return SeriesPoints(old_ts, old_values, "rollup", raw_from, coarse)
    # The step's grid resumes at its first boundary at or after raw_from (raw_from itself
    # for steps dividing an hour); the raw samples before that seam make one short bucket
    # at raw_from. So every point before raw_from is a rollup point and none after it is.
    seam = raw_from
    if step_seconds is not None:
        grid = math.floor(start.timestamp() / step_seconds) * step_seconds
        steps = math.ceil((raw_from.timestamp() - grid) / step_seconds)
        seam = min(to_datetime(grid + steps * step_seconds), end)
    pieces = [(old_ts, old_values)]
    if raw_from < seam:
        ts, values = series_values(series_id, raw_from, seam)
        width = (seam - raw_from).total_seconds()
        edge = partials_from_samples(ts, values, step=width, origin=raw_from.timestamp())
        pieces.append(finish(edge, agg))
    if limit is not None:
        limit = max(limit - old_ts.size, 0)
    recent = _points_from_raw(series_id, seam, end, step_seconds, agg, limit, raw_from, start)
    pieces.append((recent.ts, recent.values))
    return SeriesPoints(
        np.concatenate([p[0] for p in pieces]),
        np.concatenate([p[1] for p in pieces]),
        "rollup+raw",
        raw_from,
        coarse,
    )


def _points_from_raw(
    series_id: int,
    start: datetime,
    end: datetime,
    step_seconds: float | None,
    agg: str,
    limit: int | None,
    raw_from: datetime | None,
    grid_start: datetime | None = None,
) -> SeriesPoints:
    """Raw samples of [start, end), or their whole buckets on the step grid of ``start``.

    With ``grid_start`` (the rest of a read whose older part came from rollups) the grid is
    that of ``grid_start`` and samples are read from ``start`` exactly.
    """
    if step_seconds is None:
        ts, values = series_values(series_id, start, end, limit=limit)
        return SeriesPoints(ts, values, "raw", raw_from)
    origin = float(np.floor((grid_start or start).timestamp() / step_seconds)) * step_seconds
    ts, values = series_values(series_id, start if grid_start else to_datetime(origin), end)
    partials = partials_from_samples(ts, values, step=step_seconds, origin=origin)
    out_ts, out_values = finish(partials, agg)
    return SeriesPoints(out_ts, out_values, "raw", raw_from)


def _points_on_hour_grid(
    series_id: int,
    start: datetime,
    end: datetime,
    step_seconds: float,
    agg: str,
    horizon: datetime | None,
    raw_from: datetime | None,
) -> SeriesPoints:
    """A whole-hour step: rollups before the horizon, raw samples after it, one grid."""
    # Buckets are whole: start is aligned down to the step grid, so the first bucket means
    # the same whether it is read from rollups or from raw samples.
    origin = float(np.floor(start.timestamp() / step_seconds)) * step_seconds
    start = datetime.fromtimestamp(origin, tz=UTC)
    split = min(max(horizon, start), end) if horizon is not None else start
    split = _rollup_edge(split)
    parts = []
    source = []
    if split > start:
        parts.append(series_rollup_partials(series_id, start, split))
        source.append("rollup")
    if split < end:
        ts, values = series_values(series_id, split, end)
        parts.append(partials_from_samples(ts, values, step=step_seconds, origin=origin))
        source.append("raw")
    out_ts, out_values = finish(merge_partials(parts, step=step_seconds, origin=origin), agg)
    rollup_step = step_seconds if "rollup" in source else None
    return SeriesPoints(out_ts, out_values, "+".join(source), raw_from, rollup_step)


def _rollup_edge(split: datetime) -> datetime:
    """Where rollups stop when a window ends mid-hour inside them (``split`` is then ``end``).

    An hour's rollup covers the whole hour, so reading it for a window ending at 10:30
    counted the 30 minutes after ``end``: the partial hour is read from raw samples. Past
    the raw retention those are gone (or about to be), so there the last hour stays whole
    rather than vanishing.
    """
    hour = split.replace(minute=0, second=0, microsecond=0)
    if hour == split:
        return split
    raw_kept_from = timezone.now() - timedelta(days=conf.raw_retention_days())
    return hour if hour >= raw_kept_from else hour + timedelta(hours=1)


def series_list_with_latest(
    *, name: str | None = None, name_prefix: str | None = None, labels: dict | None = None
) -> QuerySet[Series]:
    """``series_list`` with ``last_ts`` and ``last_value``, each one index probe per series."""
    latest = Sample.objects.filter(series=OuterRef("pk")).order_by("-ts")
    return series_list(name=name, name_prefix=name_prefix, labels=labels).annotate(
        last_ts=Subquery(latest.values("ts")[:1]),
        last_value=Subquery(latest.values("value")[:1]),
    )


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


def rollup_status(*, now: datetime | None = None) -> dict:
    """How current rollups are: lag of the horizon behind the last closed hour."""
    now = now or timezone.now()
    state = RollupState.objects.filter(step_seconds=3600).first()
    return {
        "rolled_until": state.rolled_until if state else None,
        "stale_from": state.dirty_from if state else None,
        "lag_hours": lag_hours(rollup_horizon(), now),
    }


# Changes the overview lists: what an on-call reads before anything else.
OVERVIEW_CHANGES = 5


def overview_section() -> dict:
    """Telemetry's volume and freshness, how far rollups have caught up, and what changed
    in the last day (the latest few, and how many)."""
    since = timezone.now() - timedelta(days=1)
    recent = ChangeEvent.objects.filter(at__gte=since).order_by("-at", "-pk")
    return {
        **telemetry_summary(),
        "rollups": rollup_status(),
        "changes_24h": recent.count(),
        "latest_changes": [
            {"at": c.at, "kind": c.kind, "title": c.title, "labels": c.labels, "source": c.source}
            for c in recent[:OVERVIEW_CHANGES]
        ],
    }


def changes_between(start: datetime, end: datetime) -> list[ChangeEvent]:
    """The change events in [start, end], latest first: few per hour, so callers match
    their labels in Python (`ChangeEvent.concerns`)."""
    return list(ChangeEvent.objects.filter(at__gte=start, at__lte=end).order_by("-at", "-pk"))

"""Writes of telemetry: ingestion (bulk, idempotent, all or nothing), rollups, retention.

Every function here is the one place its write happens, each in one transaction: API
views, tasks and commands validate their input and call these.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, Max, Min, OuterRef, Subquery, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from . import conf
from .bulk import insert_event_columns, insert_samples_us
from .models import (
    ChangeEvent,
    RollupState,
    Sample,
    SampleRollup,
    Series,
    labels_key,
    labels_normalize,
)
from .selectors import raw_retention_cutoff
from .validation import (
    EventBatch,
    SampleBatch,
    TimeBounds,
    change_errors,
    validate_events,
    validate_samples,
)

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)


def series_ensure(
    *,
    name: str,
    labels: dict | None = None,
    unit: str = "",
    kind: str = "gauge",
    description: str = "",
    importance: float | None = None,
) -> Series:
    """The series of ``name`` and ``labels``, created on first sight (empty label values dropped)."""
    labels = labels_normalize(labels)
    defaults = {"labels": labels, "unit": unit, "kind": kind, "description": description}
    if importance is not None:
        defaults["importance"] = importance
    series, _ = Series.objects.get_or_create(
        name=name, labels_key=labels_key(labels), defaults=defaults
    )
    return series


def series_ensure_many(*, series: Sequence[tuple[str, dict, str]]) -> tuple[np.ndarray, int]:
    """Ids of (name, labels, unit) series, creating the missing ones in bulk; and how many
    of them this call created.

    Two or three queries whatever the batch holds: one read, and for unseen series one
    ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (a concurrent batch may create the same
    series) and, only if some already existed by then, a re-read. The count is the rows
    the insert returned: counting the series missing at the read said 2 × N when two
    clients created the same N series at once. The unit of an existing series is kept.
    """
    keys = [(name, labels_key(labels)) for name, labels, _ in series]

    def lookup() -> dict[tuple[str, str], int]:
        rows = Series.objects.filter(
            name__in={k[0] for k in keys}, labels_key__in={k[1] for k in keys}
        ).values_list("name", "labels_key", "id")
        return {(n, lk): pk for n, lk, pk in rows}

    found = lookup()
    # Created in key order, so two batches creating the same new series wait on each
    # other's index entries in one order instead of deadlocking.
    missing = sorted({key: i for i, key in enumerate(keys) if key not in found}.items())
    created = 0
    if missing:
        inserted = _series_insert(
            [(key[0], labels_normalize(series[i][1]), key[1], series[i][2]) for key, i in missing]
        )
        created = len(inserted)
        found.update(inserted)
        if created < len(missing):  # another transaction created the rest
            found = lookup()
    return np.array([found[key] for key in keys], dtype=np.int64), created


def _series_insert(rows: list[tuple[str, dict, str, str]]) -> dict[tuple[str, str], int]:
    """Insert (name, labels, labels_key, unit) series in the order given, skipping those that
    exist; returns ``{(name, labels_key): id}`` of the rows this statement inserted.

    Django's ``bulk_create(ignore_conflicts=True)`` returns no ids and cannot tell a row
    it inserted from one it skipped, hence the SQL. One statement on PostgreSQL (arrays
    unnested in order); chunks of 500 rows on SQLite (its bound-parameter limit).
    """
    table = Series._meta.db_table
    default = {f.name: f.get_default() for f in Series._meta.concrete_fields}
    # the model's defaults as plain values (a TextChoices member is adapted by its name)
    defaults = [str(default["kind"]), str(default["description"]), float(default["importance"])]
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    columns = "name, labels, labels_key, unit, kind, description, importance, created_at"
    out: dict[tuple[str, str], int] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({columns}) "
                "SELECT n, l::jsonb, k, u, %s, %s, %s, %s "
                "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
                "WITH ORDINALITY AS x(n, l, k, u, o) ORDER BY o "
                "ON CONFLICT (name, labels_key) DO NOTHING RETURNING name, labels_key, id",
                [
                    *defaults,
                    now,
                    [r[0] for r in rows],
                    [json.dumps(r[1]) for r in rows],
                    [r[2] for r in rows],
                    [r[3] for r in rows],
                ],
            )
            return {(n, k): pk for n, k, pk in cursor.fetchall()}
        for i in range(0, len(rows), 500):
            chunk = rows[i : i + 500]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
                + " ON CONFLICT (name, labels_key) DO NOTHING RETURNING name, labels_key, id",
                [
                    value
                    for name, labels, key, unit in chunk
                    for value in (name, json.dumps(labels), key, unit, *defaults, now)
                ],
            )
            out.update({(n, k): pk for n, k, pk in cursor.fetchall()})
    return out


@dataclass(frozen=True)
class IngestResult:
    received: int
    written: int  # new rows; rows already stored (a re-sent batch) are not counted
    series_created: int = 0


def ingest_bounds(*, now: float | None = None) -> TimeBounds:
    """Accepted sample timestamps: not in the future, not older than the raw retention.

    Hours older than the retention window are summarised and their raw rows deleted, so
    a sample there could never be rolled up consistently: it is refused instead.
    """
    now = time.time() if now is None else now
    cutoff = _retention_cutoff(datetime.fromtimestamp(now, tz=UTC))
    days = conf.raw_retention_days()
    return TimeBounds(
        newest=now + conf.max_future_seconds(),
        oldest=cutoff.timestamp(),
        oldest_reason=f"is older than the raw retention window ({days} days)",
    )


#: 2000-01-01 UTC. An event before it is an exporter's unset clock (epoch 0) or a unit
#: mistake; stored, year 1 stretched every "since the first event" figure over centuries,
#: and a date beyond PostgreSQL's calendar was a 500.
EVENT_OLDEST = 946_684_800.0


def event_bounds(*, now: float | None = None) -> TimeBounds:
    """Accepted event timestamps: not in the future, not before 2000 (``EVENT_OLDEST``)."""
    now = time.time() if now is None else now
    return TimeBounds(
        newest=now + conf.max_future_seconds(),
        oldest=EVENT_OLDEST,
        oldest_reason="is before 2000-01-01 (an unset clock or a unit mistake?)",
    )


def samples_ingest(*, rows: Any) -> IngestResult:
    """Validate and write samples ``[{"series", "labels"?, "ts", "value", "unit"?}]``.

    Raises ``validation.BatchInvalid`` (nothing written) when any row is wrong.
    """
    return samples_write_batch(batch=validate_samples({"samples": rows}, bounds=ingest_bounds()))


@transaction.atomic
def samples_write_batch(*, batch: SampleBatch) -> IngestResult:
    """Write a validated batch: series on first sight, then the samples by COPY."""
    ids, created = series_ensure_many(series=batch.series)
    written = insert_samples_us(ids[batch.series_index], batch.ts_us, batch.values)
    return IngestResult(received=len(batch), written=written, series_created=created)


def events_ingest(*, rows: Any) -> IngestResult:
    """Validate and write events; raises ``validation.BatchInvalid`` when any row is wrong."""
    return events_write_batch(batch=validate_events({"events": rows}, bounds=event_bounds()))


@transaction.atomic
def events_write_batch(*, batch: EventBatch) -> IngestResult:
    written = insert_event_columns(
        user_id=batch.user_id,
        name=batch.name,
        ts_us=batch.ts_us,
        session_id=batch.session_id,
        properties_json=batch.properties_json,
        client_id=batch.client_id,
    )
    return IngestResult(received=len(batch), written=written)


# --- Rollups ---------------------------------------------------------------------------


def _from_us(ts_us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def rollups_mark_stale(*, since: datetime) -> None:
    """Called inside an ingest transaction: samples at ``since`` or later were just written.

    The state row is locked: a rollup run (which takes it ``FOR UPDATE``) either finished
    before, and this marks its hours stale, or starts after this batch commits and sees
    the new samples. A batch of current data takes it ``FOR SHARE``, so such batches do not
    block each other. A late batch, which must update the row, takes ``FOR NO KEY UPDATE``
    from the start: two late batches that both held the share lock and then both
    updated waited on each other, and PostgreSQL aborted one ("deadlock detected", a 500).
    """

    def stale(rolled_until: datetime | None, dirty_from: datetime | None) -> bool:
        return (
            rolled_until is not None
            and since < rolled_until
            and (dirty_from is None or since < dirty_from)
        )

    if connection.vendor == "postgresql":
        table = RollupState._meta.db_table
        select = f"SELECT id, rolled_until, dirty_from FROM {table}"
        with connection.cursor() as cursor:
            cursor.execute(select)
            late = any(stale(r, d) for _, r, d in cursor.fetchall())
            cursor.execute(select + (" FOR NO KEY UPDATE" if late else " FOR SHARE"))
            rows = cursor.fetchall()
    else:  # SQLite serialises writers: no lock needed
        rows = list(RollupState.objects.values_list("id", "rolled_until", "dirty_from"))
    # Under a share lock the row can still turn out stale (a rollup run committed between
    # the two reads): the update below then upgrades the lock, which only another batch
    # in that same instant could make a deadlock of.
    for pk, rolled_until, dirty_from in rows:
        if stale(rolled_until, dirty_from):
            RollupState.objects.filter(pk=pk).update(dirty_from=since)


def _first_sample_hour() -> datetime | None:
    """The oldest sample's hour, read through each series' (series, ts) index."""
    first = Sample.objects.filter(series=OuterRef("pk")).order_by("ts").values("ts")[:1]
    oldest = Series.objects.annotate(first=Subquery(first)).aggregate(oldest=Min("first"))
    return _floor_hour(oldest["oldest"]) if oldest["oldest"] else None


def _rollup_window(start: datetime, end: datetime, series_chunk: int = 500) -> int:
    """Recompute the hourly rollups of [start, end) from raw samples; returns rows upserted.

    Filtering on series ids lets PostgreSQL range-scan the (series, ts) index instead of
    needing a second index on ts that every ingest would pay for.
    """
    series_ids = list(Series.objects.order_by("pk").values_list("pk", flat=True))
    upserted = 0
    for i in range(0, len(series_ids), series_chunk):
        rows = (
            Sample.objects.filter(
                series_id__in=series_ids[i : i + series_chunk], ts__gte=start, ts__lt=end
            )
            .annotate(bucket=TruncHour("ts", tzinfo=UTC))
            .values("series_id", "bucket")
            .annotate(n=Count("id"), total=Sum("value"), low=Min("value"), high=Max("value"))
            .order_by()
        )
        objs = [
            SampleRollup(
                series_id=r["series_id"],
                bucket=r["bucket"],
                count=r["n"],
                sum=r["total"],
                min=r["low"],
                max=r["high"],
                mean=r["total"] / r["n"],
            )
            for r in rows
        ]
        SampleRollup.objects.bulk_create(
            objs,
            batch_size=5000,
            update_conflicts=True,
            unique_fields=["series", "bucket"],
            update_fields=["count", "sum", "min", "max", "mean"],
        )
        upserted += len(objs)
    return upserted


def rollups_update(
    *, now: datetime | None = None, window_hours: int = 24, max_windows: int = 30
) -> dict[str, int]:
    """Summarise closed hours not yet rolled up, and recompute hours made stale by late data.

    Works in windows of ``window_hours``, one short transaction each (ingestion waits on
    the state row only that long), and at most ``max_windows`` per call so a scheduled run
    stays bounded; the next run continues where this one stopped. Running it twice
    writes the same rows.
    """
    now = now or timezone.now()
    closed = _floor_hour(now)  # the current hour is still filling up
    counts = {"windows": 0, "hours": 0, "rollups": 0, "pending": 0}
    first = None
    for _ in range(max_windows):
        with transaction.atomic():
            state, _ = RollupState.objects.select_for_update().get_or_create(step_seconds=3600)
            rolled, dirty = state.rolled_until, state.dirty_from
            if rolled is None:
                first = first or _first_sample_hour()
                if first is None:
                    return counts
                rolled = first
            start = _floor_hour(min(rolled, dirty) if dirty else rolled)
            if start >= closed:
                return counts
            end = min(start + timedelta(hours=window_hours), closed)
            counts["rollups"] += _rollup_window(start, end)
            counts["windows"] += 1
            counts["hours"] += int((end - start) / HOUR)
            if dirty is not None and end < rolled:
                state.dirty_from = end  # the stale stretch continues after this window
            else:
                state.dirty_from = None
                state.rolled_until = max(rolled, end)
            state.save(update_fields=["rolled_until", "dirty_from", "updated_at"])
    state = RollupState.objects.get(step_seconds=3600)
    start = min(filter(None, [state.rolled_until, state.dirty_from]))
    counts["pending"] = int((closed - start) / HOUR)
    return counts


# --- Retention -------------------------------------------------------------------------


def _retention_cutoff(now: datetime) -> datetime:
    """Whole hours only, so an hour is never half deleted under its rollup.

    The same moment reads call ``raw_from`` (``selectors.raw_kept_from``): one function.
    """
    return raw_retention_cutoff(now)


def samples_enforce_retention(
    *, now: datetime | None = None, batch_size: int = 20_000, max_batches: int = 500
) -> dict[str, int]:
    """Delete raw samples older than the retention window whose hours are rolled up.

    Deletes in batches of ``batch_size`` rows, one short transaction each, so the table
    is never locked for long and a big first run spreads over several scheduled runs.
    """
    now = now or timezone.now()
    cutoff = _retention_cutoff(now)
    counts = {"deleted": 0, "series": 0, "batches": 0}
    state = RollupState.objects.filter(step_seconds=3600).first()
    if state is None or state.rolled_until is None:  # nothing rolled up: deleting loses data
        return counts
    marks = (cutoff, state.rolled_until, state.dirty_from)
    safe = _floor_hour(min(m for m in marks if m is not None))
    for series_id in Series.objects.order_by("pk").values_list("pk", flat=True):
        touched = False
        while counts["batches"] < max_batches:
            with transaction.atomic():
                ids = list(
                    Sample.objects.filter(series_id=series_id, ts__lt=safe)
                    .order_by("ts")
                    .values_list("pk", flat=True)[:batch_size]
                )
                if not ids:
                    break
                deleted, _ = Sample.objects.filter(pk__in=ids).delete()
            counts["deleted"] += deleted
            counts["batches"] += 1
            touched = True
            if len(ids) < batch_size:
                break
        counts["series"] += touched
    return counts


class ChangeInvalid(ValueError):
    """A change event the checks refuse, with the reasons by field."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def change_record(
    *,
    title: str,
    at: datetime | None = None,
    kind: str = ChangeEvent.Kind.DEPLOY,
    labels: dict | None = None,
    url: str = "",
    source: str = "",
    created_by: str = "",
) -> ChangeEvent:
    """Record a change (a deploy, a scaling action): the one writer of change events, for
    the API, the admin and the systems that act on the product."""
    now = timezone.now()
    at = at or now
    labels = labels or {}
    errors = change_errors(
        at=at, title=title, labels=labels, now=now, max_future_seconds=conf.max_future_seconds()
    )
    if kind not in ChangeEvent.Kind.values:
        errors["kind"] = [f"must be one of {', '.join(ChangeEvent.Kind.values)}"]
    if errors:
        raise ChangeInvalid(errors)
    return ChangeEvent.objects.create(
        at=at,
        kind=kind,
        title=title.strip()[:200],
        labels=labels,
        url=url,
        source=source[:100],
        created_by=created_by[:150],
    )


def change_record_quietly(**fields) -> ChangeEvent | None:
    """`change_record` for a system recording its own action (a scaling change, a ship):
    the action stands whatever happens to its record, so a record the checks refuse is
    logged, never raised into the action's transaction."""
    try:
        return change_record(**fields)
    except ChangeInvalid as exc:
        logger.warning("change %r not recorded: %s", fields.get("title"), exc.errors)
        return None

"""The bulk write path for samples and events: no per-row ORM objects.

PostgreSQL: one COPY straight into the table when the rows are new; when some exist
already, COPY into a temporary staging table and one ``INSERT … ON CONFLICT DO NOTHING``,
so a re-sent batch changes nothing. Samples go through COPY's *binary* format, built as
one numpy structured array (no per-row Python), which is what lets the HTTP endpoint keep
up with a raw COPY.
SQLite (the embedded default): ``executemany`` of ``INSERT OR IGNORE``.
Callers wrap the call in ``transaction.atomic()`` when it is part of a larger write.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from django.db import connection, transaction

from .models import Event, Sample
from .pgcopy import US, samples_copy_payload


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def insert_samples(
    series_ids: Sequence[int] | np.ndarray,
    ts: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
) -> int:
    """Insert samples given as parallel arrays (ts in epoch seconds); returns rows written."""
    tss = np.asarray(ts, dtype=np.float64)
    return insert_samples_us(series_ids, np.round(tss * US).astype(np.int64), values)


def insert_samples_us(
    series_ids: Sequence[int] | np.ndarray,
    ts_us: Sequence[int] | np.ndarray,
    values: Sequence[float] | np.ndarray,
) -> int:
    """Insert samples (ts as int64 epoch microseconds); existing (series, ts) rows are kept.

    Every write path (API, demo, scripts) comes through here, so this is where rollups
    hear about samples that reach back before their horizon, in the same transaction.
    """
    sids = np.asarray(series_ids, dtype=np.int64)
    tus = np.asarray(ts_us, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    if sids.size == 0:
        return 0
    sids, tus, vals = _in_key_order(sids, tus, vals)
    from .services import rollups_mark_stale  # services import this module

    with transaction.atomic(savepoint=False):
        write = _copy_samples_postgres if _is_postgres() else _insert_samples_sqlite
        written = write(sids, tus, vals)
        if written:
            rollups_mark_stale(since=_from_us(int(tus.min())))
    return written


def _in_key_order(
    sids: np.ndarray, tus: np.ndarray, vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows sorted by (series, ts), the order of the unique index they are checked against.

    Two batches that overlap (an exporter retrying after a timeout while its first try is
    still being written, two replicas sending the same points) each wait on the other's
    uncommitted index entries. Written in different orders, each held a row the other
    needed next and PostgreSQL aborted one ("deadlock detected", a 500); in one order the
    second simply waits for the first. Costs a few milliseconds for 100,000 rows.
    """
    if sids.size > 1:
        ascending = (sids[1:] > sids[:-1]) | ((sids[1:] == sids[:-1]) & (tus[1:] > tus[:-1]))
        if not ascending.all():
            order = np.lexsort((tus, sids))
            return sids[order], tus[order], vals[order]
    return sids, tus, vals


def _copy_samples_postgres(sids: np.ndarray, tus: np.ndarray, vals: np.ndarray) -> int:
    """COPY straight into the table; if a row exists already, stage and merge instead.

    New data (the common case) costs one COPY. A re-sent or overlapping batch trips the
    unique index, the savepoint undoes the partial COPY, and the staging path merges with
    ``ON CONFLICT DO NOTHING``, which costs a third more but keeps what is stored.
    """
    table = Sample._meta.db_table
    payload = samples_copy_payload(sids, tus, vals)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            copy_sql = f"COPY {table} (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
            with cursor.cursor.copy(copy_sql) as cp:
                cp.write(payload)
            return int(sids.size)
    except psycopg.errors.UniqueViolation:
        pass
    return _merge_samples_postgres(payload)


def _merge_samples_postgres(payload: bytes) -> int:
    table = Sample._meta.db_table
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg 3 cursor under Django's wrapper
        raw.execute(
            "CREATE TEMP TABLE IF NOT EXISTS sample_stage "
            "(series_id bigint, ts timestamptz, value double precision) ON COMMIT DELETE ROWS"
        )
        raw.execute("TRUNCATE sample_stage")
        with raw.copy("COPY sample_stage (series_id, ts, value) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(payload)
        raw.execute(
            f"INSERT INTO {table} (series_id, ts, value) SELECT series_id, ts, value "
            "FROM sample_stage ON CONFLICT (series_id, ts) DO NOTHING"
        )
        written = raw.rowcount
        raw.execute("TRUNCATE sample_stage")
        return written


def _insert_samples_sqlite(sids: np.ndarray, tus: np.ndarray, vals: np.ndarray) -> int:
    table = Sample._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    stamps = (_from_us(t) for t in tus.tolist())
    rows = [(s, adapt(t), v) for s, t, v in zip(sids.tolist(), stamps, vals.tolist(), strict=True)]
    with connection.cursor() as cursor:
        before = connection.connection.total_changes
        cursor.executemany(
            f"INSERT OR IGNORE INTO {table} (series_id, ts, value) VALUES (%s, %s, %s)", rows
        )
        return connection.connection.total_changes - before


def _from_us(ts_us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)


EVENT_COLUMNS = ("user_id", "name", "ts", "session_id", "properties", "client_id")


def insert_events(rows: Sequence[tuple]) -> int:
    """Insert events as tuples in EVENT_COLUMNS order (ts a datetime, properties a dict)."""
    if not rows:
        return 0
    users, names, stamps, sessions, props, clients = zip(*rows, strict=True)
    ts_us = [round(t.timestamp() * US) for t in stamps]
    return insert_event_columns(
        user_id=users,
        name=names,
        ts_us=ts_us,
        session_id=sessions,
        properties_json=[json.dumps(p, sort_keys=True) for p in props],
        client_id=clients,
    )


def insert_event_columns(
    *,
    user_id: Sequence[str],
    name: Sequence[str],
    ts_us: Sequence[int] | np.ndarray,
    session_id: Sequence[str],
    properties_json: Sequence[str],
    client_id: Sequence[str | None],
) -> int:
    """Insert events given as columns; an existing ``client_id`` keeps its row."""
    tus = np.asarray(ts_us, dtype=np.int64).tolist()
    if not tus:
        return 0
    table = Event._meta.db_table
    cols = ", ".join(EVENT_COLUMNS)
    columns = (user_id, name, tus, session_id, properties_json, client_id)
    with connection.cursor() as cursor:
        if _is_postgres():
            raw = cursor.cursor
            raw.execute(
                "CREATE TEMP TABLE IF NOT EXISTS event_stage (user_id text, name text, "
                "ts_us bigint, session_id text, properties jsonb, client_id text) "
                "ON COMMIT DELETE ROWS"
            )
            raw.execute("TRUNCATE event_stage")
            stage_cols = "user_id, name, ts_us, session_id, properties, client_id"
            with raw.copy(f"COPY event_stage ({stage_cols}) FROM STDIN") as copy:
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
            raw.execute(
                f"INSERT INTO {table} ({cols}) SELECT user_id, name, "
                "timestamptz 'epoch' + ts_us * interval '1 microsecond', session_id, "
                "properties, client_id FROM event_stage ORDER BY client_id "
                # in client_id order, so two overlapping batches wait instead of deadlocking
                "ON CONFLICT (client_id) DO NOTHING"
            )
            written = raw.rowcount
            raw.execute("TRUNCATE event_stage")
            return written
        adapt = connection.ops.adapt_datetimefield_value
        before = connection.connection.total_changes
        cursor.executemany(
            f"INSERT OR IGNORE INTO {table} ({cols}) VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (u, n, adapt(_from_us(t)), s, p, c)
                for u, n, t, s, p, c in zip(*columns, strict=True)
            ],
        )
        return connection.connection.total_changes - before

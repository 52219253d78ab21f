"""The bulk write path for samples and events: no per-row ORM objects.

PostgreSQL: COPY into a temporary staging table, then one ``INSERT … ON CONFLICT DO
NOTHING``, so a re-sent batch changes nothing and a batch is one statement's worth of
atomicity. SQLite (the embedded default): ``executemany`` of ``INSERT OR IGNORE``.
Callers wrap the call in ``transaction.atomic()`` when it is part of a larger write.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from django.db import connection

from .models import Event, Sample


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def insert_samples(
    series_ids: Sequence[int] | np.ndarray,
    ts: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
) -> int:
    """Insert samples given as parallel arrays (ts in epoch seconds); returns rows written."""
    table = Sample._meta.db_table
    sids = np.asarray(series_ids, dtype=np.int64)
    tss = np.asarray(ts, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    if sids.size == 0:
        return 0
    stamps = [datetime.fromtimestamp(t, tz=UTC) for t in tss.tolist()]
    with connection.cursor() as cursor:
        if _is_postgres():
            raw = cursor.cursor  # the psycopg 3 cursor under Django's wrapper
            raw.execute(
                "CREATE TEMP TABLE IF NOT EXISTS sample_stage "
                "(series_id bigint, ts timestamptz, value double precision) ON COMMIT DELETE ROWS"
            )
            raw.execute("TRUNCATE sample_stage")
            with raw.copy("COPY sample_stage (series_id, ts, value) FROM STDIN") as copy:
                for row in zip(sids.tolist(), stamps, vals.tolist(), strict=True):
                    copy.write_row(row)
            raw.execute(
                f"INSERT INTO {table} (series_id, ts, value) SELECT series_id, ts, value "
                "FROM sample_stage ON CONFLICT (series_id, ts) DO NOTHING"
            )
            written = raw.rowcount
            raw.execute("TRUNCATE sample_stage")
            return written
        adapt = connection.ops.adapt_datetimefield_value
        before = connection.connection.total_changes
        cursor.executemany(
            f"INSERT OR IGNORE INTO {table} (series_id, ts, value) VALUES (%s, %s, %s)",
            [
                (s, adapt(t), v)
                for s, t, v in zip(sids.tolist(), stamps, vals.tolist(), strict=True)
            ],
        )
        return connection.connection.total_changes - before


EVENT_COLUMNS = ("user_id", "name", "ts", "session_id", "properties", "client_id")


def insert_events(rows: Sequence[tuple]) -> int:
    """Insert events as tuples in EVENT_COLUMNS order (ts a datetime, properties a dict)."""
    if not rows:
        return 0
    table = Event._meta.db_table
    cols = ", ".join(EVENT_COLUMNS)
    with connection.cursor() as cursor:
        if _is_postgres():
            raw = cursor.cursor
            raw.execute(
                "CREATE TEMP TABLE IF NOT EXISTS event_stage (user_id text, name text, "
                "ts timestamptz, session_id text, properties jsonb, client_id text) "
                "ON COMMIT DELETE ROWS"
            )
            raw.execute("TRUNCATE event_stage")
            with raw.copy(f"COPY event_stage ({cols}) FROM STDIN") as copy:
                for u, n, t, s, p, c in rows:
                    copy.write_row((u, n, t, s, json.dumps(p), c))
            raw.execute(
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM event_stage "
                "ON CONFLICT (client_id) DO NOTHING"
            )
            written = raw.rowcount
            raw.execute("TRUNCATE event_stage")
            return written
        adapt = connection.ops.adapt_datetimefield_value
        before = connection.connection.total_changes
        cursor.executemany(
            f"INSERT OR IGNORE INTO {table} ({cols}) VALUES (%s, %s, %s, %s, %s, %s)",
            [(u, n, adapt(t), s, json.dumps(p), c) for u, n, t, s, p, c in rows],
        )
        return connection.connection.total_changes - before

"""PostgreSQL's binary COPY format for (bigint, timestamptz, double precision) rows: numpy only.

Building the stream as one structured array costs a few milliseconds for 100,000 rows,
where handing rows one by one to psycopg costs Python work per row (and text COPY adds
number formatting and parsing on both sides). Format reference: the "Binary Format"
section of PostgreSQL's COPY documentation.
"""

from __future__ import annotations

import numpy as np

US = 1_000_000
#: PostgreSQL's binary timestamps count microseconds from 2000-01-01 UTC
PG_EPOCH_US = 946_684_800 * US
PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
# One binary COPY row of (bigint, timestamptz, double precision): field count, then
# (length, value) per field, all big-endian. The dtype is packed, as the format is.
_SAMPLE_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("len_series", ">i4"),
        ("series", ">i8"),
        ("len_ts", ">i4"),
        ("ts", ">i8"),
        ("len_value", ">i4"),
        ("value", ">f8"),
    ]
)


def samples_copy_payload(series_ids: np.ndarray, ts_us: np.ndarray, values: np.ndarray) -> bytes:
    """The binary COPY stream of (series_id, ts, value) rows, built in one numpy pass."""
    rows = np.empty(series_ids.size, dtype=_SAMPLE_ROW)
    rows["fields"] = 3
    rows["len_series"] = rows["len_ts"] = rows["len_value"] = 8
    rows["series"] = series_ids
    rows["ts"] = ts_us - PG_EPOCH_US
    rows["value"] = values
    return PGCOPY_HEADER + rows.tobytes() + PGCOPY_TRAILER

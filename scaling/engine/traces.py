"""Reading load traces (``timestamp,value`` CSV) for replays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


class TraceError(ValueError):
    """A trace file that cannot be replayed, with the reason a person can act on."""


def read_trace_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (epoch seconds) and values of a ``timestamp,value`` CSV, sorted, deduplicated."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read CSV ({exc})") from exc
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise TraceError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    stamps = pd.to_datetime(frame["timestamp"], errors="coerce", utc=True, format="mixed")
    values = pd.to_numeric(frame["value"], errors="coerce")
    bad = stamps.isna() | values.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # 1-based, after the header
        raise TraceError(f"{path}: line {row} has an unreadable timestamp or value")
    if (values < 0).any():
        raise TraceError(f"{path}: load values must be >= 0")
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    order = np.argsort(seconds, kind="stable")
    seconds, vals = seconds[order], values.to_numpy(dtype=float)[order]
    keep = np.r_[True, np.diff(seconds) > 0]
    if keep.sum() < 2:
        raise TraceError(f"{path}: need at least two distinct timestamps")
    return seconds[keep], vals[keep]

"""Downsampling onto a regular grid from raw samples, hourly rollups, or both: pure numpy.

A long-range read is answered from hourly rollups for the old part and raw samples for
the recent part. Both are first reduced to *partials* (count, sum, min, max per bucket),
which combine exactly, so the answer is the same as downsampling the raw samples alone
(tests check this). Also parses the ``step`` query parameter ("300", "5m", "1h").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

AGGREGATIONS = ("mean", "min", "max", "sum", "count")
_STEP_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: The largest bucket a read may ask for: one (leap) year. A step of millennia was taken,
#: and aligning ``start`` down to it moved the window centuries back (or before year 1, a
#: 400 on ``start`` that never named the step that caused it).
MAX_STEP_SECONDS = 366 * 86400


def parse_step(text: str) -> float:
    """``"300"`` / ``"300s"`` / ``"5m"`` / ``"1h"`` / ``"1d"`` -> seconds; ValueError if not.

    At least 1 second and at most ``MAX_STEP_SECONDS`` (366 days).
    """
    match = _STEP_RE.match(str(text))
    if not match:
        raise ValueError("must be seconds or a duration such as 30s, 5m, 1h, 1d")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 1:
        raise ValueError("must be at least 1 second")
    if seconds > MAX_STEP_SECONDS:
        raise ValueError(f"must be at most 366 days ({MAX_STEP_SECONDS} seconds)")
    return seconds


@dataclass(frozen=True)
class Partials:
    """Per-bucket summaries on a grid: bucket start (epoch s), count, sum, min, max."""

    start: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def empty(cls) -> Partials:
        return cls(*(np.empty(0) for _ in range(5)))


def partials_from_samples(
    ts: np.ndarray, values: np.ndarray, *, step: float, origin: float
) -> Partials:
    """Summarise raw samples into buckets ``origin + k * step``."""
    if ts.size == 0:
        return Partials.empty()
    bucket = np.floor((ts - origin) / step).astype(np.int64)
    return _group(bucket, np.ones_like(values), values, values, values, step, origin)


def merge_partials(parts: list[Partials], *, step: float, origin: float) -> Partials:
    """Re-bucket partials (e.g. hourly rollups) onto a grid of ``step``; exact for step >= theirs."""
    parts = [p for p in parts if p.start.size]
    if not parts:
        return Partials.empty()
    start = np.concatenate([p.start for p in parts])
    bucket = np.floor((start - origin) / step + 1e-9).astype(np.int64)
    return _group(
        bucket,
        np.concatenate([p.count for p in parts]),
        np.concatenate([p.sum for p in parts]),
        np.concatenate([p.min for p in parts]),
        np.concatenate([p.max for p in parts]),
        step,
        origin,
    )


def _group(bucket, count, total, low, high, step: float, origin: float) -> Partials:
    uniq, inverse = np.unique(bucket, return_inverse=True)
    lows = np.full(uniq.size, np.inf)
    highs = np.full(uniq.size, -np.inf)
    np.minimum.at(lows, inverse, low)
    np.maximum.at(highs, inverse, high)
    return Partials(
        start=origin + uniq.astype(np.float64) * step,
        count=np.bincount(inverse, weights=count),
        sum=np.bincount(inverse, weights=total),
        min=lows,
        max=highs,
    )


def finish(partials: Partials, agg: str) -> tuple[np.ndarray, np.ndarray]:
    """Bucket starts and the aggregate asked for."""
    if agg not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {agg!r}")
    if agg == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            out = partials.sum / partials.count
    else:
        out = getattr(partials, agg).astype(np.float64)
    return partials.start, out

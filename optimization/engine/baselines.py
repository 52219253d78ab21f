"""Seasonal baselines by hour of week: what "normal" looks like for a series at a given time.

Web traffic and latency follow the week (Monday 10:00 is not Sunday 03:00), so a single global
threshold either fires every busy hour or misses every quiet one. Each of the 168 hours of the
week gets robust statistics (median, MAD, p95) that a few outliers cannot drag. Telemetry has
gaps (missing scrapes, NaN values, a series that started on Wednesday); a bucket with too few
points borrows from the same hour of day across the week, then from the whole series, and
records where its figures came from so a reader can discount them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOURS_PER_WEEK = 168
# 1970-01-01 (epoch 0) was a Thursday; with Monday = 0 Thursday is day 3.
_EPOCH_DAY_OF_WEEK = 3
# MAD of a normal sample times this equals its standard deviation.
MAD_TO_SIGMA = 1.4826

SOURCE_HOUR_OF_WEEK = 0
SOURCE_HOUR_OF_DAY = 1
SOURCE_GLOBAL = 2


def hour_of_week(ts: np.ndarray) -> np.ndarray:
    """Hour of the week (UTC, Monday 00:00 = 0) for epoch-second timestamps."""
    hours = np.floor(np.asarray(ts, dtype=np.float64) / 3600.0).astype(np.int64)
    return (hours + _EPOCH_DAY_OF_WEEK * 24) % HOURS_PER_WEEK


@dataclass(frozen=True)
class HourOfWeekBaseline:
    """Robust statistics per hour of week; each array has 168 entries.

    ``source`` says where a bucket's figures come from (0 its own hour of week, 1 the same hour of
    day on other days, 2 the whole series) and ``support`` how many points it used.
    """

    median: np.ndarray
    mad: np.ndarray
    p95: np.ndarray
    support: np.ndarray
    source: np.ndarray

    def expected(self, ts: np.ndarray) -> np.ndarray:
        """The baseline median at each timestamp."""
        return self.median[hour_of_week(ts)]

    def robust_z(self, ts: np.ndarray, values: np.ndarray, mad_floor: float = 1e-9) -> np.ndarray:
        """How many robust standard deviations each value sits above its hour's median.

        The MAD is floored at 1 % of the median: a perfectly flat history (MAD 0) would otherwise
        make any change infinitely significant.
        """
        how = hour_of_week(ts)
        scale = MAD_TO_SIGMA * np.maximum(
            self.mad[how], np.maximum(0.01 * np.abs(self.median[how]), mad_floor)
        )
        return (np.asarray(values, dtype=np.float64) - self.median[how]) / scale


def _robust_stats(values: np.ndarray) -> tuple[float, float, float]:
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    return median, mad, float(np.percentile(values, 95))


def hour_of_week_baseline(
    ts: np.ndarray, values: np.ndarray, *, min_points: int = 3
) -> HourOfWeekBaseline:
    """Compute the hour-of-week baseline of a series.

    ``min_points`` is the smallest sample a bucket trusts on its own; below it the bucket falls
    back (hour of day, then global) rather than report a median of one point as "normal".
    Raises ``ValueError`` when the series has no finite value at all: there is nothing to
    compare against, and a silent zero baseline would flag everything.
    """
    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if ts.shape != values.shape:
        raise ValueError("ts and values must have the same shape")
    finite = np.isfinite(values) & np.isfinite(ts)
    ts, values = ts[finite], values[finite]
    if values.size == 0:
        raise ValueError("the series has no finite values")

    how = hour_of_week(ts)
    order = np.argsort(how, kind="stable")
    how_sorted, values_sorted = how[order], values[order]
    bounds = np.searchsorted(how_sorted, np.arange(HOURS_PER_WEEK + 1))

    global_stats = _robust_stats(values)
    hod = how % 24
    hod_stats: dict[int, tuple[float, float, float, int]] = {}
    for hour in range(24):
        bucket = values[hod == hour]
        if bucket.size >= min_points:
            hod_stats[hour] = (*_robust_stats(bucket), bucket.size)

    median = np.empty(HOURS_PER_WEEK)
    mad = np.empty(HOURS_PER_WEEK)
    p95 = np.empty(HOURS_PER_WEEK)
    support = np.empty(HOURS_PER_WEEK, dtype=np.int64)
    source = np.empty(HOURS_PER_WEEK, dtype=np.int64)
    for bucket_index in range(HOURS_PER_WEEK):
        bucket = values_sorted[bounds[bucket_index] : bounds[bucket_index + 1]]
        if bucket.size >= min_points:
            median[bucket_index], mad[bucket_index], p95[bucket_index] = _robust_stats(bucket)
            support[bucket_index], source[bucket_index] = bucket.size, SOURCE_HOUR_OF_WEEK
        elif bucket_index % 24 in hod_stats:
            m, d, p, n = hod_stats[bucket_index % 24]
            median[bucket_index], mad[bucket_index], p95[bucket_index] = m, d, p
            support[bucket_index], source[bucket_index] = n, SOURCE_HOUR_OF_DAY
        else:
            median[bucket_index], mad[bucket_index], p95[bucket_index] = global_stats
            support[bucket_index], source[bucket_index] = values.size, SOURCE_GLOBAL
    return HourOfWeekBaseline(median=median, mad=mad, p95=p95, support=support, source=source)

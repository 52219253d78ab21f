"""Robust trends: is a series drifting, how fast, and is the drift real?

The slope is Theil-Sen (median of pairwise slopes): one incident spike cannot tilt it the way it
tilts least squares. Its significance is the Mann-Kendall test, which is Kendall's tau between
time and value; it only asks whether later values tend to be larger, so it needs no normality.
Both tests assume independent points, and raw 5-minute telemetry is strongly autocorrelated and
seasonal, which makes nearly any wiggle "significant"; ``bucket_seconds`` first reduces the series
to bucket medians (a day removes the daily cycle) so that the test asks about the drift of
typical days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class Trend:
    """A robust trend; ``slope_per_day`` is in the series' unit per day."""

    slope_per_day: float
    slope_low: float
    slope_high: float
    tau: float
    p_value: float
    level: float
    points: int
    significant: bool

    @property
    def relative_change_per_week(self) -> float:
        """Weekly change as a share of the series' median level (0.1 = 10 % per week)."""
        if self.level == 0 or not np.isfinite(self.level):
            return 0.0
        return self.slope_per_day * 7.0 / abs(self.level)

    @property
    def direction(self) -> str:
        """ "up", "down" or "flat" (flat when not significant)."""
        if not self.significant:
            return "flat"
        return "up" if self.slope_per_day > 0 else "down"


def bucket_medians(
    ts: np.ndarray, values: np.ndarray, bucket_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Median of the finite values in each time bucket, keyed by the bucket's start."""
    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(ts) & np.isfinite(values)
    ts, values = ts[finite], values[finite]
    if ts.size == 0:
        return ts, values
    keys = np.floor(ts / bucket_seconds)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    unique, starts = np.unique(keys, return_index=True)
    medians = np.array([np.median(chunk) for chunk in np.split(values, starts[1:])])
    return unique * bucket_seconds, medians


def robust_trend(
    ts: np.ndarray,
    values: np.ndarray,
    *,
    bucket_seconds: float | None = None,
    alpha: float = 0.05,
    min_points: int = 6,
) -> Trend | None:
    """Theil-Sen slope with a Mann-Kendall significance test.

    Returns ``None`` when fewer than ``min_points`` (after bucketing) remain: a trend through
    three points is a guess, and callers should say "not enough data" rather than show one.
    """
    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if bucket_seconds:
        ts, values = bucket_medians(ts, values, bucket_seconds)
    else:
        finite = np.isfinite(ts) & np.isfinite(values)
        ts, values = ts[finite], values[finite]
    if ts.size < min_points:
        return None
    days = (ts - ts[0]) / SECONDS_PER_DAY
    level = float(np.median(values))
    if np.ptp(values) == 0:
        return Trend(0.0, 0.0, 0.0, 0.0, 1.0, level, int(ts.size), False)
    slope, _intercept, low, high = stats.theilslopes(values, days, alpha=1 - alpha)
    tau, p_value = stats.kendalltau(days, values)
    p_value = float(p_value) if np.isfinite(p_value) else 1.0
    return Trend(
        slope_per_day=float(slope),
        slope_low=float(low),
        slope_high=float(high),
        tau=float(tau) if np.isfinite(tau) else 0.0,
        p_value=p_value,
        level=level,
        points=int(ts.size),
        significant=p_value < alpha and slope != 0,
    )

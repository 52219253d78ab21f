"""Sampling step, regular grids and seasonality detection.

Every model in the engine works on a regular grid indexed 0..n-1, so that a
season is a fixed number of steps. This module turns irregular telemetry
(gaps, duplicated timestamps) into such a grid and finds which of the
calendar periods a web product has (a day, a week) show up in the data.
"""

from __future__ import annotations

import numpy as np

DAY = 86_400.0
WEEK = 7 * DAY


def infer_step(timestamps: np.ndarray) -> float:
    """Typical spacing of the samples in seconds.

    The median is used rather than the mean so that a few gaps or bursts of
    late samples do not change the grain the series is modelled at.
    """
    ts = np.asarray(timestamps, dtype=float)
    if ts.size < 2:
        raise ValueError("need at least two timestamps to infer a step")
    diffs = np.diff(np.unique(ts))
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise ValueError("all timestamps are equal")
    return float(np.median(diffs))


def regularize(
    timestamps: np.ndarray, values: np.ndarray, step: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Put a series on a regular grid of ``step`` seconds ending at its last sample.

    Samples falling into the same slot are averaged; empty slots are filled by
    linear interpolation, because the models index seasons by position and a
    missing slot would shift every later season by one step.
    """
    ts = np.asarray(timestamps, dtype=float)
    ys = np.asarray(values, dtype=float)
    if ts.shape != ys.shape or ts.ndim != 1:
        raise ValueError("timestamps and values must be 1-D arrays of the same length")
    keep = np.isfinite(ts) & np.isfinite(ys)
    ts, ys = ts[keep], ys[keep]
    if ts.size < 2:
        raise ValueError("need at least two finite samples")
    if step is None:
        step = infer_step(ts)
    end = ts.max()
    slot = np.round((end - ts) / step).astype(np.int64)
    n = int(slot.max()) + 1
    sums = np.bincount(slot, weights=ys, minlength=n)
    counts = np.bincount(slot, minlength=n)
    # slot 0 is the last sample: reverse so the grid runs forward in time
    sums, counts = sums[::-1], counts[::-1]
    grid = end - step * np.arange(n - 1, -1, -1, dtype=float)
    filled = counts > 0
    out = np.empty(n)
    out[filled] = sums[filled] / counts[filled]
    if not filled.all():
        idx = np.arange(n)
        out[~filled] = np.interp(idx[~filled], idx[filled], out[filled])
    return grid, out


def aggregate(
    timestamps: np.ndarray,
    values: np.ndarray,
    step: float,
    *,
    sample_step: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Average a series into buckets of ``step`` seconds aligned on the epoch.

    Long horizons are forecast on coarser buckets (hours, days): a one-year
    forecast at 5-minute grain would be 100k steps of noise, while daily means
    keep the trend and the weekly pattern that matter at that range. Buckets
    are aligned on the epoch so that daily buckets are calendar days (UTC).
    Only buckets that have samples are returned; ``regularize`` fills holes.

    The last bucket is dropped when the samples stop before its end (the day
    in progress): its mean would cover only part of the daily cycle, e.g. the
    night trough for a forecast run at 03:20 UTC, and every model would read
    it as a drop. A bucket counts as complete when its last sample, plus one
    ``sample_step`` (default: the series' inferred spacing), reaches its end
    within half a sample step.
    """
    ts = np.asarray(timestamps, dtype=float)
    ys = np.asarray(values, dtype=float)
    keep = np.isfinite(ts) & np.isfinite(ys)
    ts, ys = ts[keep], ys[keep]
    bucket = np.floor(ts / step).astype(np.int64)
    uniq, inverse = np.unique(bucket, return_inverse=True)
    sums = np.bincount(inverse, weights=ys)
    counts = np.bincount(inverse)
    starts, means = uniq.astype(float) * step, sums / counts
    if sample_step is None and np.unique(ts).size >= 2:
        sample_step = infer_step(ts)
    if sample_step is not None and starts.size:
        covered_until = ts.max() + sample_step
        if covered_until < starts[-1] + step - 0.5 * sample_step:
            starts, means = starts[:-1], means[:-1]
    return starts, means


def candidate_periods(step: float, n: int, min_seasons: int = 2) -> list[int]:
    """Calendar periods (a day, a week) in steps that the history is long enough to show.

    Web traffic follows the clock: a daily and a weekly rhythm are the only
    seasonalities worth looking for, and a period needs ``min_seasons`` full
    repetitions in the history before it can be estimated at all.
    """
    out: list[int] = []
    for seconds in (DAY, WEEK):
        period = seconds / step
        rounded = round(period)
        whole = abs(period - rounded) < 1e-6 * max(1.0, period)
        if rounded >= 2 and whole and n >= min_seasons * rounded:
            out.append(int(rounded))
    return out


def acf(values: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelation for lags 0..max_lag, computed with one FFT."""
    y = np.asarray(values, dtype=float)
    y = y - y.mean()
    n = y.size
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(y, size)
    corr = np.fft.irfft(spectrum * np.conj(spectrum), size)[: max_lag + 1]
    if corr[0] <= 0:
        return np.zeros(max_lag + 1)
    return corr / corr[0]


def is_seasonal(values: np.ndarray, period: int, z: float = 1.645) -> bool:
    """Test for seasonality at ``period`` the way the M4 competition's Naive2 does.

    The autocorrelation at the seasonal lag must exceed ``z`` standard errors
    (Bartlett's formula over the lower lags). A linear trend is removed first,
    because a trending series is autocorrelated at every lag.
    """
    y = np.asarray(values, dtype=float)
    n = y.size
    if period < 2 or n < 2 * period:
        return False
    t = np.arange(n, dtype=float)
    slope, intercept = np.polyfit(t, y, 1)
    detrended = y - (slope * t + intercept)
    if np.allclose(detrended, 0):
        return False
    r = acf(detrended, period)
    se = np.sqrt((1 + 2 * np.sum(r[1:period] ** 2)) / n)
    return bool(r[period] > z * se)


def detect_seasonality(values: np.ndarray, step: float) -> list[int]:
    """Seasonal periods (in steps) present in the series, shortest first."""
    y = np.asarray(values, dtype=float)
    return [p for p in candidate_periods(step, y.size) if is_seasonal(y, p)]

"""Prediction intervals calibrated on backtest errors, step by step.

Model-based intervals assume the model is right; ours are read off the
errors the chosen model actually made in a rolling-origin backtest on this
series (split conformal prediction on absolute errors). Errors are pooled over
a small window of neighbouring horizon steps so each quantile rests on enough
points, and widths are made non-decreasing in the horizon because
uncertainty does not shrink with distance. Which errors are read (not the ones
the model was chosen on) is decided in ``selection``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri, stdtrit

from forecasting.engine.models import seasonal_profile


@dataclass(frozen=True)
class ErrorQuantiles:
    """Bounds of (actual - forecast) per horizon step, for one interval level."""

    level: float
    lower: np.ndarray
    upper: np.ndarray


def pool_half_width(h_bt: int) -> int:
    """Neighbouring steps pooled on each side of a step when its quantiles are read."""
    return max(1, h_bt // 24)


def conformal_fraction(n_origins: int, level: float) -> float:
    """Share of the sorted calibration scores the interval reaches: ceil((n+1)·level)/(n+1).

    The k-th smallest of n exchangeable scores covers a new one with probability k/(n+1),
    which is the split-conformal rank; read as a share of the pooled scores it is k/(n+1),
    not k/n (k/n over-covered: 0.97 at 95% on stationary series with 96 origins). With
    too few origins the rank passes n and the largest score is all there is (1.0).
    """
    return min(1.0, float(np.ceil((n_origins + 1) * level - 1e-9)) / (n_origins + 1))


def min_calibration_origins(level: float) -> int:
    """Fewest origins whose split-conformal rank for ``level`` is a finite order statistic.

    The rank is ceil((n+1)·level) of n absolute errors; when it exceeds n the conformal
    interval is unbounded and ``error_quantiles_at`` falls back to the largest error, whatever
    the level (4 origins for 80%, 19 for 95%).
    """
    n = 1
    while np.ceil((n + 1) * level - 1e-9) > n:
        n += 1
    return n


def effective_draws(errors: np.ndarray) -> np.ndarray:
    """Independent draws the errors of each step amount to, measured across origins.

    Rows are origins in time order. Forecasts from nearby origins share most of the
    actuals they are scored on when the step is far and the series wanders (a random
    walk a week ahead: 96 origins over four weeks are about five draws), and hardly any
    when the errors are noise. n / (1 + 2 * the sum of the autocorrelations over their
    initial positive run, as Geyer's rule for MCMC chains) measures it rather than
    assuming either.
    """
    x = np.asarray(errors, dtype=float)
    n = x.shape[0]
    if n < 4:
        return np.full(x.shape[1], float(n))
    x = x - x.mean(axis=0)
    size = 1 << int(np.ceil(np.log2(2 * n)))  # zero padding: no circular wrap-around
    spectrum = np.fft.rfft(x, size, axis=0)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=0)[: n // 2]
    rho = np.divide(acov[1:], acov[0], out=np.zeros_like(acov[1:]), where=acov[0] > 0)
    positive_run = np.cumprod(rho > 0, axis=0).astype(bool)
    return np.clip(n / (1.0 + 2.0 * np.where(positive_run, rho, 0.0).sum(axis=0)), 1.0, n)


def error_quantiles(errors: np.ndarray, level: float, horizon: int) -> ErrorQuantiles:
    """Half-widths for one level; see ``error_quantiles_at``."""
    return error_quantiles_at(errors, (level,), horizon)[0]


def error_quantiles_at(
    errors: np.ndarray, levels: tuple[float, ...], horizon: int
) -> tuple[ErrorQuantiles, ...]:
    """Half-widths read off absolute backtest errors (origins x steps), to ``horizon`` steps.

    Absolute errors rather than signed quantiles: with few independent windows (a week
    ahead from six weeks of history) the signed errors at the far steps all share the
    drift of the calibration period, so their quantiles were shifted by it and their
    spread around their own centre was narrower than the true one. The spread of |error|
    around zero keeps both in.

    A quantile read off few independent draws is a noisy estimate, and a noisy width
    covers less than its level on average (coverage is concave in the width). Each step's
    width is widened by Student's t over the normal quantile at its effective number of
    draws, the prediction interval of a scale estimated from that many: x1.15 at 80% from
    5 draws, x1.01 from 96. Beyond the backtested steps the last width grows like sqrt(h),
    the rate of a random walk, which is the honest default when there is no evidence.
    All levels are read in one pass (the pooled errors are the expensive part).
    """
    signed = np.asarray(errors, dtype=float)
    n_orig, h_bt = signed.shape
    half = pool_half_width(h_bt)
    # each step pools the errors of its neighbours; edges repeat the outermost step
    padded = np.pad(np.abs(signed), ((0, 0), (half, half)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=1)
    pooled = windows.transpose(1, 0, 2).reshape(h_bt, -1)
    # origins, not pooled points, are the conformal sample
    shares = [conformal_fraction(n_orig, level) for level in levels]
    widths = np.quantile(pooled, shares, axis=1)
    draws = effective_draws(signed)
    out = []
    for level, width in zip(levels, widths, strict=True):
        tail = (1.0 + level) / 2.0
        width = np.maximum.accumulate(width * stdtrit(draws, tail) / ndtri(tail))
        if horizon > h_bt:
            grow = np.sqrt(np.arange(h_bt + 1, horizon + 1) / h_bt)
            width = np.concatenate([width, width[-1] * grow])
        out.append(ErrorQuantiles(level=level, lower=-width[:horizon], upper=width[:horizon]))
    return tuple(out)


def trend_slope_spread(values: np.ndarray, period: int, horizon: int, windows: int = 4) -> float:
    """How much the series' slope moves between recent windows, beyond what noise explains.

    The calibration errors come from origins before the selection backtest, so a trend
    that bent within the last two horizons is not in them (simulated slope changes a week
    ahead: 0.70 realised at 80%), and a short history with a long horizon has no earlier
    origins at all. The slope the point forecast extrapolates is itself uncertain: this
    measures it as the spread of the least-squares slopes of the last ``windows``
    non-overlapping windows of about one horizon each (at least two seasons, at most a
    quarter of the history) on the seasonally adjusted series.

    Noise alone makes window slopes differ too, and a random walk's by far the most, so
    the expected sampling variance of a window slope is subtracted: the series is read as a
    local level (random-walk increments of variance q seen through white noise r, both
    measured from the first differences: lag-1 autocovariance -r, variance q + 2r), whose
    slope over L points varies by about 6q/(5L) + 12r/L^3. Only the excess is returned, in
    units per step (0 when the slopes vary no more than noise would make them).
    """
    y = np.asarray(values, dtype=float)
    m = max(1, int(period))
    if m > 1:
        y = y - seasonal_profile(y, m)[np.arange(y.size) % m]
    n = y.size
    length = max(2 * m, min(int(horizon), n // windows))
    count = min(windows, n // length)
    if count < 2 or length < 3:
        return 0.0
    x = np.arange(length) - (length - 1) / 2.0
    segments = y[n - count * length :].reshape(count, length)
    slopes = (segments - segments.mean(axis=1, keepdims=True)) @ x / (x @ x)
    d = np.diff(y)
    d = d - d.mean()
    r = max(0.0, -float(d[1:] @ d[:-1]) / max(1, d.size - 1))
    q = max(0.0, float(d.var()) - 2.0 * r)
    noise = q * 6.0 / (5.0 * length) + r * 12.0 / length**3
    return float(np.sqrt(max(float(np.var(slopes, ddof=1)) - noise, 0.0)))


def widen_for_trend(quantiles: ErrorQuantiles, slope_spread: float) -> ErrorQuantiles:
    """Add the uncertainty of the slope to a half-width: k steps ahead it moves the path by k·s.

    Added in quadrature with the calibrated width (independent sources), at the normal
    quantile of the level: the slope spread is a standard deviation, not an error sample.
    With no excess slope spread the width is unchanged.
    """
    if not slope_spread > 0:
        return quantiles
    tail = (1.0 + quantiles.level) / 2.0
    steps = np.arange(1, quantiles.upper.size + 1)
    width = np.hypot(quantiles.upper, ndtri(tail) * slope_spread * steps)
    return ErrorQuantiles(level=quantiles.level, lower=-width, upper=width)


def apply(point: np.ndarray, quantiles: ErrorQuantiles) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds around a point forecast."""
    return point + quantiles.lower[: point.size], point + quantiles.upper[: point.size]

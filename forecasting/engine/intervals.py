"""Prediction intervals calibrated on backtest errors, step by step.

Model-based intervals assume the model is right; ours are read off the
errors the chosen model actually made in the rolling-origin backtest on this
series (split conformal prediction, in spirit). Errors are pooled over a
small window of neighbouring horizon steps so each quantile rests on enough
points, and widths are made non-decreasing in the horizon because
uncertainty does not shrink with distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ErrorQuantiles:
    """Quantiles of (actual - forecast) per horizon step, for one interval level."""

    level: float
    lower: np.ndarray
    upper: np.ndarray


def pool_half_width(h_bt: int) -> int:
    """Neighbouring steps pooled on each side of a step when its quantiles are read."""
    return max(1, h_bt // 24)


def min_calibration_origins(level: float) -> int:
    """Fewest origins whose split-conformal rank for ``level`` is a finite order statistic.

    The rank is ceil((n+1)(1 - tail)) of n scores; when it exceeds n the conformal interval
    is unbounded and ``error_quantiles`` falls back to the extreme error, whatever the level
    (9 origins for 80%, 39 for 95%).
    """
    tail = (1.0 - level) / 2.0
    n = 1
    while np.ceil((n + 1) * (1.0 - tail) - 1e-9) > n:
        n += 1
    return n


def error_quantiles(errors: np.ndarray, level: float, horizon: int) -> ErrorQuantiles:
    """Quantiles of backtest errors (origins x steps) extended to ``horizon`` steps.

    Beyond the backtested steps the last width grows like sqrt(h), the rate
    of a random walk, which is the honest default when there is no evidence.
    """
    errors = np.asarray(errors, dtype=float)
    n_orig, h_bt = errors.shape
    # split-conformal rank: the ceil((n+1)(1-tail))-th of n scores. Origins, not pooled
    # points, are the independent draws, so n is the number of origins; with few origins
    # this widens the interval instead of pretending to know the tail
    tail = max(0.0, 1.0 - np.ceil((n_orig + 1) * (1.0 - (1.0 - level) / 2.0)) / n_orig)
    half = pool_half_width(h_bt)
    # each step pools the errors of its neighbours; edges repeat the outermost step
    padded = np.pad(errors, ((0, 0), (half, half)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=1)
    pooled = np.sort(windows.transpose(1, 0, 2).reshape(h_bt, -1), axis=1)
    last = pooled.shape[1] - 1

    def at(rank: float) -> np.ndarray:  # linear interpolation between order statistics
        low = int(np.floor(rank))
        high = min(low + 1, last)
        return pooled[:, low] + (rank - low) * (pooled[:, high] - pooled[:, low])

    lower = at(tail * last)
    upper = at((1.0 - tail) * last)
    lower = np.minimum.accumulate(np.minimum(lower, 0.0))
    upper = np.maximum.accumulate(np.maximum(upper, 0.0))
    if horizon > h_bt:
        grow = np.sqrt(np.arange(h_bt + 1, horizon + 1) / h_bt)
        lower = np.concatenate([lower, lower[-1] * grow])
        upper = np.concatenate([upper, upper[-1] * grow])
    return ErrorQuantiles(level=level, lower=lower[:horizon], upper=upper[:horizon])


def apply(point: np.ndarray, quantiles: ErrorQuantiles) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds around a point forecast."""
    return point + quantiles.lower[: point.size], point + quantiles.upper[: point.size]

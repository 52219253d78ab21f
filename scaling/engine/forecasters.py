"""Short-horizon load forecasters for predictive scaling.

The scaling engine only needs a callable ``(timestamps, values, horizon) ->
point forecasts for the next ``horizon`` steps``: the forecasting app's engine
can be plugged in, and :class:`SeasonalLevelForecaster` is the cheap built-in
one. Uncertainty is not asked of the forecaster: the simulator and the service
measure it from the forecaster's own past errors, which works for any model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

Forecaster = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def ewma(values: np.ndarray, alpha: float) -> np.ndarray:
    """Exponentially weighted moving average, started at the first value (no warm-up bias)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return values
    zi = np.array([(1.0 - alpha) * values[0]])
    out, _ = lfilter([alpha], [1.0, -(1.0 - alpha)], values, zi=zi)
    return out


def median_step_seconds(timestamps: np.ndarray) -> float:
    """The sampling step of a trace (median, so that a few gaps do not change it)."""
    if timestamps.size < 2:
        return 0.0
    return float(np.median(np.diff(timestamps[-min(timestamps.size, 500) :])))


def recent_step_seconds(timestamps: np.ndarray, points: int = 50) -> float:
    """Average step over the last ``points`` samples: cheap enough to call at every step."""
    m = min(timestamps.size, points)
    if m < 2:
        return 0.0
    return float(timestamps[-1] - timestamps[-m]) / (m - 1)


@dataclass(frozen=True)
class SeasonalLevelForecaster:
    """Recent level (EWMA) times a daily-profile ratio learnt from the previous days.

    Why this shape: one step ahead, the best cheap estimate of load is a
    smoothed recent level (the raw last value carries all its noise). A few
    steps ahead, traffic follows the time of day, so the level is multiplied by
    how much load changed over the same stretch of the day on previous days
    (median over days, so one unusual day does not move it). The profile ratio
    is shrunk towards 1 and clipped because it is estimated from a handful of
    noisy days.
    """

    alpha: float = 0.3
    season_seconds: float = 86400.0
    max_seasons: int = 7
    min_seasons: int = 2
    shrink: float = 0.5
    smooth_half_width: int = 2
    base_points: int = 6  # about the EWMA's effective window for alpha 0.3
    level_points: int = 64  # 0.7**64 ~ 1e-10: older points do not move the level

    def __call__(self, timestamps: np.ndarray, values: np.ndarray, horizon: int) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            raise ValueError("cannot forecast from an empty history")
        step = recent_step_seconds(np.asarray(timestamps, dtype=float))
        period = round(self.season_seconds / step) if step > 0 else 0
        k = self.smooth_half_width
        now_level = float(ewma(values[-self.level_points :], self.alpha)[-1])
        if period <= horizon + k or values.size <= self.min_seasons * period + self.base_points:
            return np.full(horizon, max(now_level, 0.0))
        tail = values[-(self.max_seasons * period + self.base_points) :]
        csum = np.concatenate(([0.0], np.cumsum(tail)))
        n = tail.size
        bases = n - 1 - period * np.arange(1, self.max_seasons + 1)
        bases = bases[bases - self.base_points + 1 >= 0]
        # Level at the same time of day on previous days (trailing mean, like the EWMA)
        # and the centred mean h steps later: their ratio is the day's profile.
        denom = (csum[bases + 1] - csum[bases + 1 - self.base_points]) / self.base_points
        h = np.arange(1, horizon + 1)
        centre = bases[:, None] + h[None, :]
        hi = np.minimum(centre + k + 1, n)
        ahead = (csum[hi] - csum[centre - k]) / (hi - centre + k)
        usable = denom > 1e-12
        if usable.sum() < self.min_seasons:
            return np.full(horizon, max(now_level, 0.0))
        profile = np.median(ahead[usable] / denom[usable, None], axis=0)
        factors = np.clip(1.0 + self.shrink * (profile - 1.0), 0.5, 2.0)
        return np.maximum(now_level * factors, 0.0)


def last_value_forecaster(timestamps: np.ndarray, values: np.ndarray, horizon: int) -> np.ndarray:
    """Naive forecast (the last value), the reference any forecaster must beat."""
    return np.full(horizon, float(np.asarray(values)[-1]))

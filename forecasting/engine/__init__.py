"""Pure forecasting engine: numpy / scipy (and, optionally, Prophet). No Django here.

``forecast(timestamps, values, horizon)`` is the one-call face used by the
``forecast`` management command; ``select_and_forecast`` returns the full
result (both interval levels, the model chosen and its backtest scores), and
``forecast_over`` picks the grain for a horizon given in seconds.
"""

from __future__ import annotations

import numpy as np

from forecasting.engine.calendar import DAY, aggregate, infer_step
from forecasting.engine.selection import ForecastResult, ModelScore, select_and_forecast

__all__ = [
    "ForecastResult",
    "ModelScore",
    "choose_step",
    "forecast",
    "forecast_over",
    "select_and_forecast",
]

#: the most steps a forecast is made in at its grain; beyond it the series is aggregated
MAX_STEPS = 800
#: grains a series may be aggregated to for long horizons
GRAINS = (3600.0, DAY, 7 * DAY)


def _as_epoch_seconds(timestamps: np.ndarray) -> tuple[np.ndarray, bool]:
    ts = np.asarray(timestamps)
    if np.issubdtype(ts.dtype, np.datetime64):
        return ts.astype("datetime64[ns]").astype(np.int64) / 1e9, True
    return ts.astype(float), False


def forecast(
    timestamps: np.ndarray, values: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Forecast ``horizon`` steps after the last sample, at the series' own grain.

    Returns (future timestamps, yhat, lower, upper) with an 80% interval.
    Timestamps may be epoch seconds or numpy datetime64; the future timestamps
    come back in the same kind.
    """
    ts, was_datetime = _as_epoch_seconds(timestamps)
    result = select_and_forecast(ts, np.asarray(values, dtype=float), int(horizon))
    future = result.timestamps
    if was_datetime:
        future = (future * 1e9).round().astype("datetime64[ns]")
    return future, result.yhat, result.lower80, result.upper80


def choose_step(native_step: float, horizon_seconds: float, max_steps: int = MAX_STEPS) -> float:
    """The finest grain at which ``horizon_seconds`` fits in ``max_steps`` steps.

    Short horizons stay at the series' own frequency (the daily shape is the
    forecast); long ones move to hours, days or weeks, where the trend and
    the weekly pattern survive and the noise of single minutes averages out.
    """
    if horizon_seconds / native_step <= max_steps:
        return native_step
    for grain in GRAINS:
        if grain > native_step and horizon_seconds / grain <= max_steps:
            return grain
    return GRAINS[-1]


def forecast_over(
    timestamps: np.ndarray,
    values: np.ndarray,
    horizon_seconds: float,
    *,
    include_prophet: bool = False,
) -> ForecastResult:
    """Forecast a series ``horizon_seconds`` ahead at the grain that suits the horizon."""
    ts, _ = _as_epoch_seconds(timestamps)
    ys = np.asarray(values, dtype=float)
    native = infer_step(ts)
    grain = choose_step(native, horizon_seconds)
    if grain != native:
        ts, ys = aggregate(ts, ys, grain, sample_step=native)
    steps = max(1, int(np.ceil(horizon_seconds / grain)))
    return select_and_forecast(ts, ys, steps, step=grain, include_prophet=include_prophet)

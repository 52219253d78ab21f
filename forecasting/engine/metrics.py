"""Accuracy measures used to pick models and to report them.

MASE (Hyndman & Koehler 2006) scales errors by the in-sample error of the
seasonal naive forecast, so it is comparable across series of any unit and
below 1 means "better than repeating last season". sMAPE is reported
because the M competitions use it, but it is not used to choose models
(it misbehaves near zero).
"""

from __future__ import annotations

import numpy as np


def mase_scale(history: np.ndarray, period: int) -> float:
    """Mean absolute error of the in-sample seasonal naive forecast (MASE denominator)."""
    y = np.asarray(history, dtype=float)
    m = max(1, int(period))
    if y.size <= m:
        m = 1
    if y.size < 2:
        return 1.0
    scale = float(np.mean(np.abs(y[m:] - y[:-m])))
    if scale > 0 and np.isfinite(scale):
        return scale
    # a flat or perfectly periodic history: fall back to the spread of the data
    spread = float(np.mean(np.abs(y - y.mean())))
    return spread if spread > 0 else max(abs(float(y.mean())), 1.0) * 1e-9


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    """Mean absolute scaled error."""
    return float(np.mean(np.abs(np.asarray(actual) - np.asarray(forecast))) / scale)


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent (M4 definition, 0..200); 0/0 counts as a perfect point."""
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    den = np.abs(a) + np.abs(f)
    ratio = np.divide(2.0 * np.abs(a - f), den, out=np.zeros_like(den), where=den > 0)
    return float(100.0 * np.mean(ratio))


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actual values inside [lower, upper]."""
    a = np.asarray(actual, dtype=float)
    return float(np.mean((a >= np.asarray(lower)) & (a <= np.asarray(upper))))

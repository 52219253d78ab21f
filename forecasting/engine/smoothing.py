"""Exponential-smoothing recursions run as linear filters.

With fixed smoothing parameters, simple and damped-trend exponential
smoothing are linear time-invariant systems, so ``scipy.signal.lfilter``
runs them in C instead of a Python loop over every sample. That is what
keeps model selection cheap enough to fit a grid of parameters for every
series on every run.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def ses_levels(values: np.ndarray, alpha: float, initial: float) -> np.ndarray:
    """Levels of simple exponential smoothing: l_t = alpha*y_t + (1-alpha)*l_{t-1}."""
    y = np.asarray(values, dtype=float)
    out, _ = lfilter([alpha], [1.0, alpha - 1.0], y, zi=[(1.0 - alpha) * initial])
    return out


def damped_trend_states(
    values: np.ndarray, alpha: float, beta: float, phi: float, level0: float, trend0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Level and trend after each sample of additive damped-trend smoothing.

    Error-correction form (Hyndman et al., *Forecasting with Exponential
    Smoothing*): with e_t = y_t - l_{t-1} - phi*b_{t-1},
    l_t = l_{t-1} + phi*b_{t-1} + alpha*e_t and b_t = phi*b_{t-1} + alpha*beta*e_t.
    Written as x_t = D x_{t-1} + k y_t, each state is ``k`` filtered through
    (I - D z^-1)^-1 (a second-order rational filter) plus the free response of
    the initial state, which is the same filter applied to an impulse.
    """
    y = np.asarray(values, dtype=float)
    k0, k1 = alpha, alpha * beta
    d11, d12 = 1.0 - k0, phi - k0 * phi
    d21, d22 = -k1, phi - k1 * phi
    den = [1.0, -(d11 + d22), d11 * d22 - d12 * d21]
    # initial state after one step of the free dynamics: v = D x0
    v0 = d11 * level0 + d12 * trend0
    v1 = d21 * level0 + d22 * trend0
    impulse = np.zeros_like(y)
    impulse[0] = 1.0

    def component(row: int, a: float, b: float) -> list[float]:
        # row of adj(I - D z^-1) applied to the vector (a, b)
        if row == 0:
            return [a, -d22 * a + d12 * b]
        return [b, d21 * a - d11 * b]

    level = lfilter(component(0, k0, k1), den, y) + lfilter(component(0, v0, v1), den, impulse)
    trend = lfilter(component(1, k0, k1), den, y) + lfilter(component(1, v0, v1), den, impulse)
    return level, trend


def damped_sum(phi: float, horizon: int) -> np.ndarray:
    """phi + phi^2 + ... + phi^h for h = 1..horizon: how far a damped trend carries."""
    h = np.arange(1, horizon + 1, dtype=float)
    if phi >= 1.0:
        return h
    return phi * (1.0 - phi**h) / (1.0 - phi)

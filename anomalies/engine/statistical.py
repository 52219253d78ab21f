"""Statistical family: robust z-scores of the seasonal residual at several time scales,
a surge score against a slow median, and the generalized ESD test.

A single-point z-score catches spikes; the same residual averaged over a few points
catches a shift a little later but with far less noise, which is what finds the *start* of
a sustained anomaly early (NAB rewards early detection). The scale is a winsorised mean
absolute error, so it is as robust as a MAD but can be updated one point at a time.

Those residuals are taken against predictors that adapt within the hour, so a surge that
lasts (a news story doubling traffic for a day) is soon "expected". The second view keeps
a slow anchor instead: the running median and median absolute deviation of the series
over about `robust_span` points, tracked by stochastic approximation (each point moves the
median one step towards itself and the spread up or down by a factor, so both settle
where half the points fall on either side; Robbins & Monro, 1951), and scores how far a
short average of the last few points sits from that median in MADs. On bursty series,
where the mean absolute error is inflated by routine spikes, the MAD stays the width of
the ordinary traffic. The family's evidence is the sum of the two views' surprisals: they
measure against different baselines and rarely agree on routine points.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .config import DetectorConfig, alpha

STAT_NAMES: tuple[str, ...] = ("point_z", "short_z", "medium_z", "surge_z")
# The residual views, whose strongest voice speaks for them; surge_z is the last column.
RESIDUAL_VIEWS = 3
# Calibration looks at the tail above one scale unit (see calibration.TailCalibrator).
HURDLES: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
# Median absolute deviation times this is the standard deviation of a Gaussian.
MAD_TO_SD = 1.4826


def new_statistical_state(n_series: int) -> dict[str, np.ndarray]:
    return {
        "short": np.zeros(n_series),
        "medium": np.zeros(n_series),
        "robust_median": np.zeros(n_series),
        "robust_mad": np.zeros(n_series),
        "surge": np.zeros(n_series),
    }


def residual_statistics(
    state: dict[str, np.ndarray],
    residual: np.ndarray,
    scale: np.ndarray,
    valid: np.ndarray,
    count: np.ndarray,
    cfg: DetectorConfig,
) -> np.ndarray:
    """|z| of the residual at one, a few and a few dozen points; shape (series, 3).

    The running averages include the current point: the statistic at t uses data up to t.
    """
    warm = 1.0 / (count + 1.0)
    r = np.where(valid, residual, 0.0)
    for key, span in (("short", cfg.short_span), ("medium", cfg.medium_span)):
        a = np.maximum(alpha(span), warm)
        state[key] = np.where(valid, state[key] + a * (r - state[key]), state[key])
    return np.abs(np.stack([r, state["short"], state["medium"]], axis=1)) / scale[:, None]


def surge_statistic(
    state: dict[str, np.ndarray],
    y: np.ndarray,
    valid: np.ndarray,
    count: np.ndarray,
    scale_floor: np.ndarray,
    cfg: DetectorConfig,
) -> np.ndarray:
    """|short average - running median| in MADs, then move the median and MAD (in place).

    The statistic at t includes the point at t in the short average and is measured
    against the median and MAD learned before it.
    """
    first = valid & (count == 0)
    later = valid & (count > 0)
    y0 = np.where(valid, y, 0.0)
    median = np.where(first, y0, state["robust_median"])
    mad = np.where(first, 0.0, state["robust_mad"])
    a = np.maximum(alpha(cfg.surge_span), 1.0 / (count + 1.0))
    state["surge"] = np.where(
        first, y0, np.where(valid, state["surge"] + a * (y0 - state["surge"]), state["surge"])
    )
    spread = np.maximum(MAD_TO_SD * mad, scale_floor)
    z = np.where(later, np.abs(state["surge"] - median) / spread, 0.0)

    step = np.maximum(1.0 / cfg.robust_span, 1.0 / (count + 1.0))
    dev = y0 - median
    moved = median + step * np.maximum(mad, scale_floor) * np.sign(dev)
    state["robust_median"] = np.where(later, moved, median)
    # The MAD grows when a point falls outside it and shrinks when inside, by the same
    # factor, so it settles where half the points do; it starts from the first deviation.
    grown = mad * np.exp(step * np.where(np.abs(dev) > mad, 1.0, -1.0))
    state["robust_mad"] = np.where(later, np.where(mad > 0, grown, np.abs(dev)), mad)
    return z


def esd_critical_value(n: int, i: int, alpha_level: float) -> float:
    """Rosner's critical value lambda_i for the i-th (1-based) removal from n points."""
    p = 1.0 - alpha_level / (2.0 * (n - i + 1))
    t = stats.t.ppf(p, n - i - 1)
    return float((n - i) * t / np.sqrt((n - i - 1 + t * t) * (n - i + 1)))


def generalized_esd(x: np.ndarray, max_outliers: int, alpha_level: float = 0.05) -> np.ndarray:
    """Indices of the outliers found by Rosner's generalized ESD test (two-sided).

    Used for after-the-fact review of a window (the `anomaly/detect` endpoint and the admin),
    where the whole window is known; the streaming detector uses the causal z-scores above.
    Returns indices in the order they were removed (most extreme first).
    """
    values = np.asarray(x, dtype=float)
    keep = np.flatnonzero(np.isfinite(values))
    n = keep.size
    max_outliers = int(min(max_outliers, max(n - 3, 0)))
    removed: list[int] = []
    n_significant = 0
    for i in range(1, max_outliers + 1):
        sample = values[keep]
        sd = sample.std(ddof=1)
        if sd == 0.0:
            break
        dev = np.abs(sample - sample.mean())
        j = int(np.argmax(dev))
        removed.append(int(keep[j]))
        if dev[j] / sd > esd_critical_value(n, i, alpha_level):
            n_significant = i
        keep = np.delete(keep, j)
    return np.asarray(removed[:n_significant], dtype=np.int64)

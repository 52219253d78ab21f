"""Business insights read off a series and its forecast.

Three questions operators ask of a key number: how fast is it growing (and
how sure are we), when will it cross a limit (an SLO, a capacity), and did
its trend change recently. The answers are computed from daily means with
the weekly pattern removed, because a day is the grain at which business
trends are discussed and the daily/weekly rhythm would otherwise be read
as growth or decline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from forecasting.engine.calendar import DAY, aggregate, detect_seasonality, infer_step, regularize
from forecasting.engine.models import seasonal_profile


@dataclass(frozen=True)
class GrowthEstimate:
    """Growth over ``per_days``: relative (0.1 = +10%) when the series is positive, else absolute.

    ``lower``/``upper`` bound the rate at ``level`` confidence; ``confidence``
    is 1 - p of the Mann-Kendall test that there is any monotonic trend.
    """

    rate: float
    lower: float
    upper: float
    level: float
    confidence: float
    per_days: float
    relative: bool
    points: int


@dataclass(frozen=True)
class Crossing:
    """When a forecast reaches a threshold: expected, earliest and latest (epoch seconds).

    ``None`` means "not within the forecast horizon". For an upper limit the
    earliest date comes from the upper interval bound and the latest from the
    lower bound, and the other way round for a lower limit.
    """

    threshold: float
    direction: str
    expected: float | None
    earliest: float | None
    latest: float | None


@dataclass(frozen=True)
class TrendChange:
    """A change of slope at ``at`` (epoch seconds); slopes are per day."""

    at: float
    slope_before: float
    slope_after: float
    p_value: float


def daily_adjusted(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Daily means (for sub-daily data) with the weekly pattern removed when there is one."""
    ts = np.asarray(timestamps, dtype=float)
    ys = np.asarray(values, dtype=float)
    if infer_step(ts) < DAY:
        ts, ys = aggregate(ts, ys, DAY)
    if ts.size < 2:
        return ts, ys
    grid, y = regularize(ts, ys)
    step = float(grid[1] - grid[0])
    periods = detect_seasonality(y, step)
    if periods and y.size >= 3 * periods[0]:
        profile = seasonal_profile(y, periods[0])
        y = y - profile[np.arange(y.size) % periods[0]]
    return grid, y


def growth_rate(
    timestamps: np.ndarray, values: np.ndarray, *, per_days: float = 30.0, level: float = 0.9
) -> GrowthEstimate:
    """Trend growth over ``per_days`` with a confidence interval.

    Theil-Sen slope (median of pairwise slopes) with its distribution-free
    interval: robust to the outages and spikes telemetry has, unlike least
    squares. Positive series are fitted on a log scale so the rate is a
    percentage, which is how growth is compared across metrics.
    """
    ts, y = daily_adjusted(timestamps, values)
    if y.size < 4:
        raise ValueError("need at least 4 days of data to estimate growth")
    days = (ts - ts[0]) / DAY
    relative = bool(np.all(y > 0))
    target = np.log(y) if relative else y
    slope, _, low, high = stats.theilslopes(target, days, alpha=level)
    tau = stats.kendalltau(days, target)
    p = float(tau.pvalue) if np.isfinite(tau.pvalue) else 1.0

    def per_period(s: float) -> float:
        return float(np.expm1(s * per_days)) if relative else float(s * per_days)

    return GrowthEstimate(
        rate=per_period(slope),
        lower=per_period(low),
        upper=per_period(high),
        level=level,
        confidence=1.0 - p,
        per_days=per_days,
        relative=relative,
        points=int(y.size),
    )


def _first(ts: np.ndarray, hit: np.ndarray) -> float | None:
    idx = np.flatnonzero(hit)
    return float(ts[idx[0]]) if idx.size else None


def threshold_crossing(
    timestamps: np.ndarray,
    yhat: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    threshold: float,
    direction: str = "above",
) -> Crossing:
    """First forecast time at which the point forecast and the interval bounds reach ``threshold``.

    ``direction="above"`` is for limits the series must stay under (latency
    SLO, CPU capacity); ``"below"`` for floors (active users, success rate).
    """
    ts = np.asarray(timestamps, dtype=float)
    if direction == "above":
        reach = (np.asarray(yhat) >= threshold, np.asarray(upper) >= threshold)
        late = np.asarray(lower) >= threshold
    elif direction == "below":
        reach = (np.asarray(yhat) <= threshold, np.asarray(lower) <= threshold)
        late = np.asarray(upper) <= threshold
    else:
        raise ValueError("direction must be 'above' or 'below'")
    return Crossing(
        threshold=float(threshold),
        direction=direction,
        expected=_first(ts, reach[0]),
        earliest=_first(ts, reach[1]),
        latest=_first(ts, late),
    )


def detect_trend_change(
    timestamps: np.ndarray,
    values: np.ndarray,
    *,
    min_segment: float = 0.2,
    alpha: float = 0.01,
) -> TrendChange | None:
    """The most likely change of slope, if it is significant.

    Fits a continuous broken line (a hinge at each candidate day) and keeps
    the best; an F-test compares it with one straight line. The search over
    breakpoints and the autocorrelation of daily data both make a plain F-test
    too eager, so the hinge counts as two parameters and the degrees of
    freedom use the effective sample size n(1-r)/(1+r), r being the lag-1
    autocorrelation of the straight-line residuals.
    """
    ts, y = daily_adjusted(timestamps, values)
    n = y.size
    if n < 10:
        return None
    days = (ts - ts[0]) / DAY
    line = np.column_stack([np.ones(n), days])
    coef0, *_ = np.linalg.lstsq(line, y, rcond=None)
    resid0 = y - line @ coef0
    sse0 = float(resid0 @ resid0)
    if sse0 <= 0:
        return None
    lo, hi = int(np.ceil(min_segment * n)), int(np.floor((1 - min_segment) * n))
    best_sse, best_k, best_coef = np.inf, -1, None
    for k in range(max(lo, 2), min(hi, n - 2)):
        design = np.column_stack([line, np.maximum(0.0, days - days[k])])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ coef
        sse = float(resid @ resid)
        if sse < best_sse:
            best_sse, best_k, best_coef = sse, k, coef
    if best_coef is None:
        return None
    r = float(np.corrcoef(resid0[:-1], resid0[1:])[0, 1]) if n > 3 else 0.0
    r = min(max(r if np.isfinite(r) else 0.0, 0.0), 0.9)
    n_eff = n * (1 - r) / (1 + r)
    dof = max(n_eff - 4.0, 1.0)
    f_stat = ((sse0 - best_sse) / 2.0) / (max(best_sse, 1e-300) / dof)
    p = float(stats.f.sf(f_stat, 2, dof))
    if p >= alpha:
        return None
    return TrendChange(
        at=float(ts[best_k]),
        slope_before=float(best_coef[1]),
        slope_after=float(best_coef[1] + best_coef[2]),
        p_value=p,
    )

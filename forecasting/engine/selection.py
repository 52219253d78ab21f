"""Per-series model selection by rolling-origin backtest, and the final forecast.

For each series the candidate models forecast the last part of its own
history from many origins, with parameters fitted only on data before the
first origin. The model with the lowest MASE wins, but only if it beats the
seasonal naive forecast on that same backtest: otherwise the seasonal naive
is used, as a model that cannot beat it has not earned its complexity.
Intervals are then calibrated on the winner's errors from earlier origins,
the ones its choice did not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from forecasting.engine import intervals
from forecasting.engine.calendar import detect_seasonality, regularize
from forecasting.engine.metrics import mase, mase_scale, smape
from forecasting.engine.models import (
    DampedTrendSmoothing,
    ForecastModel,
    ProphetModel,
    SeasonalMean,
    SeasonalNaive,
    SeriesContext,
    Theta,
)

#: origins per backtest; more only adds correlated evidence and costs time
MAX_ORIGINS = 96
#: fewest observations a forecast is attempted on
MIN_OBSERVATIONS = 8
#: origins of the interval calibration, spread over the history before the selection backtest
CALIBRATION_ORIGINS = 96
#: share of that history the calibration's models are fitted on, at least
CALIBRATION_FIT_SHARE = 0.25


@dataclass(frozen=True)
class ModelScore:
    """How one model did in the backtest of one series."""

    model: str
    mase: float
    smape: float
    coverage80: float = float("nan")
    coverage95: float = float("nan")


@dataclass(frozen=True)
class ForecastResult:
    """A forecast with its intervals, the model that made it and its measured accuracy."""

    timestamps: np.ndarray
    yhat: np.ndarray
    lower80: np.ndarray
    upper80: np.ndarray
    lower95: np.ndarray
    upper95: np.ndarray
    model: str
    step: float
    periods: tuple[int, ...]
    chosen: ModelScore
    baseline: ModelScore
    scores: tuple[ModelScore, ...] = field(default_factory=tuple)
    backtest_horizon: int = 0
    backtest_origins: int = 0
    history_points: int = 0


@dataclass(frozen=True)
class BacktestPlan:
    """Where the backtest cuts the history: fit on y[:fit_end], forecast from each origin."""

    fit_end: int
    origins: np.ndarray
    horizon: int


def plan_backtest(n: int, horizon: int, period: int) -> BacktestPlan | None:
    """Choose the backtest window for a series of ``n`` points.

    The fitting part keeps at least three seasons (or 60% of the data when
    that is all there is); origins cover at least one horizon or one season
    after it, so that every step ahead is tested from many starting points.
    When the history is shorter than needed the backtest horizon shrinks,
    and the interval beyond it is extrapolated (see ``intervals``).
    """
    m = max(1, period)
    min_fit = max(3 * m, 2 * m + 10, MIN_OBSERVATIONS)
    if n - min_fit < 2:
        min_fit = max(m + 2, int(0.6 * n))
    room = n - min_fit
    if room < 2:
        return None
    h_bt = max(1, min(horizon, room // 2))
    span = min(max(horizon, m, 12), room - h_bt + 1)
    fit_end = n - h_bt - span + 1
    origins = np.arange(fit_end, n - h_bt + 1)
    if origins.size > MAX_ORIGINS:
        origins = np.unique(np.linspace(fit_end, n - h_bt, MAX_ORIGINS).round().astype(int))
    return BacktestPlan(fit_end=int(fit_end), origins=origins, horizon=int(h_bt))


def candidate_models(periods: Sequence[int], include_prophet: bool = False) -> list[ForecastModel]:
    """The model pool: strong simple baselines for each detected period, optionally Prophet."""
    primary = periods[0] if periods else 1
    pool: list[ForecastModel] = [SeasonalNaive(primary)]
    if primary > 1:
        pool.append(SeasonalNaive(1))
    for p in periods:
        if p != primary:
            pool.append(SeasonalNaive(p))
        pool += [SeasonalMean(p, 3), SeasonalMean(p, 5, robust=True)]
        pool += [DampedTrendSmoothing(p), Theta(p)]
    if not periods:
        pool += [DampedTrendSmoothing(1), Theta(1)]
    if include_prophet:
        pool.append(ProphetModel())
    return pool


def _score(actual: np.ndarray, paths: np.ndarray, scale: float, name: str) -> ModelScore:
    return ModelScore(model=name, mase=mase(actual, paths, scale), smape=smape(actual, paths))


def _coverage_out_of_sample(
    errors: np.ndarray, origins: np.ndarray, horizon: int
) -> tuple[float, float]:
    """Calibrate on the earlier half of the origins, measure coverage on later forecasts.

    Coverage measured on the errors the quantiles were read from would be 80% by
    construction; this split says whether the intervals hold up on data they were not
    tuned on. Two rules keep it honest:

    * a test error at step k counts only when its origin comes after every actual value
      the calibration read for that step (and its pooled neighbours): as in production,
      where the intervals rest on errors whose actuals were all known when the forecast was
      made. Without this gap, errors of overlapping windows (the same unusual days) sat on
      both sides and the figure was optimistic.
    * a level is reported (else NaN) only when the calibration half has enough origins for
      its split-conformal rank to be finite (``intervals.min_calibration_origins``): below
      that both levels fall back to the extreme error and would report the same coverage.
    """
    n_orig = errors.shape[0]
    if n_orig < 4:
        return float("nan"), float("nan")
    cut = n_orig // 2
    calib, test = errors[:cut], errors[cut:]
    half = intervals.pool_half_width(horizon)
    # test origin o counts at step k when o > last calibration origin + k + pooled steps
    lead = origins[cut:, None] - origins[cut - 1]
    valid = lead > np.arange(horizon)[None, :] + half
    levels = (0.8, 0.95)
    quantiles = intervals.error_quantiles_at(calib, levels, horizon)
    out = []
    for level, q in zip(levels, quantiles, strict=True):
        if cut < intervals.min_calibration_origins(level) or not valid.any():
            out.append(float("nan"))
            continue
        inside = (test >= q.lower[None, :]) & (test <= q.upper[None, :])
        # each step weighs the same: the later steps have fewer test origins past the gap
        steps = valid.any(axis=0)
        per_step = (inside & valid).sum(axis=0)[steps] / valid.sum(axis=0)[steps]
        out.append(float(per_step.mean()))
    return out[0], out[1]


def _calibration_errors(
    ctx: SeriesContext,
    plan: BacktestPlan,
    members: Sequence[ForecastModel],
    selection_errors: np.ndarray,
    period: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Origins and errors the intervals are calibrated on: the chosen model's, from origins
    before the selection backtest, its parameters fitted before the first of them.

    The selection backtest's own errors made the intervals too narrow twice over. It spans
    about one horizon, so at the far steps its windows overlap and share one stretch of the
    series (one or two independent draws a week ahead). And the model was chosen because
    its errors there were the smallest, so they understate the errors to come. Earlier
    origins took no part in the choice and, spread over the history, add windows that do
    not overlap (random walks with a daily cycle, a week ahead, realised 80% coverage: 0.76
    with the earlier origins added to the selection errors, 0.78 with the earlier origins
    alone, whose reported coverage is also nearer the realised one). The price is recency:
    a trend that bent within the last two horizons is in the selection errors only (see
    the limits in docs/forecasting.md). A history with no room before the selection
    backtest, or a Prophet fit (which would be read further out than in production),
    keeps the selection errors.
    """
    m = max(1, period)
    first = max([3 * m, 2 * m + 10, MIN_OBSERVATIONS] + [x.min_history for x in members])
    # fitted on too little data the calibration's models err more than the final one will
    first = max(first, int(np.ceil(CALIBRATION_FIT_SHARE * plan.fit_end)))
    extra = np.unique(np.linspace(first, plan.fit_end - 1, CALIBRATION_ORIGINS).round())
    extra = extra[(extra >= first) & (extra < plan.fit_end)].astype(int)
    if extra.size < 2 * intervals.min_calibration_origins(0.8) or any(
        isinstance(x, ProphetModel) for x in members
    ):
        return plan.origins, selection_errors
    paths = np.mean([x.paths(ctx, first, extra, plan.horizon) for x in members], axis=0)
    if not np.all(np.isfinite(paths)):
        return plan.origins, selection_errors
    errors = ctx.values[extra[:, None] + np.arange(plan.horizon)[None, :]] - paths
    return extra, errors


def select_and_forecast(
    timestamps: np.ndarray,
    values: np.ndarray,
    horizon: int,
    *,
    step: float | None = None,
    include_prophet: bool = False,
    nonnegative: bool | None = None,
) -> ForecastResult:
    """Backtest the candidate models on this series, pick one, forecast ``horizon`` steps."""
    if horizon < 1:
        raise ValueError("horizon must be at least 1 step")
    grid_ts, y = regularize(timestamps, values, step)
    n = y.size
    if n < MIN_OBSERVATIONS:
        raise ValueError(f"need at least {MIN_OBSERVATIONS} observations, got {n}")
    step = float(grid_ts[1] - grid_ts[0])
    if nonnegative is None:
        nonnegative = bool(np.all(y >= 0))
    ctx = SeriesContext(values=y, timestamps=grid_ts, step=step)
    periods = detect_seasonality(y, step)
    primary = periods[0] if periods else 1
    plan = plan_backtest(n, horizon, primary)
    future_ts = grid_ts[-1] + step * np.arange(1, horizon + 1)

    if plan is None:  # too short to test anything: repeat the last value, no evidence
        point = np.repeat(y[-1], horizon)
        spread = np.std(np.diff(y)) * np.sqrt(np.arange(1, horizon + 1))
        score = ModelScore(model="naive", mase=float("nan"), smape=float("nan"))
        return _result(
            future_ts, point, point - 1.2816 * spread, point + 1.2816 * spread,
            point - 1.96 * spread, point + 1.96 * spread, "naive", step, periods, score,
            score, (score,), 0, 0, n, nonnegative,
        )  # fmt: skip

    pool = [m for m in candidate_models(periods, include_prophet) if m.min_history <= plan.fit_end]
    offsets = np.arange(plan.horizon)[None, :]
    actual = y[plan.origins[:, None] + offsets]
    scale = mase_scale(y[: plan.fit_end], primary)
    paths: dict[str, np.ndarray] = {}
    models: dict[str, ForecastModel] = {}
    for model in pool:
        p = model.paths(ctx, plan.fit_end, plan.origins, plan.horizon)
        if np.all(np.isfinite(p)):
            paths[model.name] = p
            models[model.name] = model
    baseline_name = pool[0].name
    scores = {name: _score(actual, p, scale, name) for name, p in paths.items()}

    # combinations: the mean of the three best single models by backtest MASE
    ranked = sorted(scores.values(), key=lambda s: s.mase)
    members = tuple(s.model for s in ranked[:3])
    if len(members) >= 2:
        combo = f"mean({', '.join(members)})"
        paths[combo] = np.mean([paths[m] for m in members], axis=0)
        scores[combo] = _score(actual, paths[combo], scale, combo)

    best = min(scores.values(), key=lambda s: s.mase)
    baseline = scores[baseline_name]
    chosen_name = best.model if best.mase < baseline.mase else baseline_name
    final_members = members if chosen_name.startswith("mean(") else (chosen_name,)
    cal_origins, errors = _calibration_errors(
        ctx, plan, [models[m] for m in final_members], actual - paths[chosen_name], primary
    )
    cov80, cov95 = _coverage_out_of_sample(errors, cal_origins, plan.horizon)
    chosen = ModelScore(
        chosen_name, scores[chosen_name].mase, scores[chosen_name].smape, cov80, cov95
    )

    final_origin = np.array([n])
    point = np.mean(
        [models[m].paths(ctx, n, final_origin, horizon)[0] for m in final_members], axis=0
    )
    q80, q95 = intervals.error_quantiles_at(errors, (0.8, 0.95), horizon)
    # the slope the forecast extrapolates may itself move (a late bend, a long horizon)
    spread = intervals.trend_slope_spread(y, primary, horizon)
    q80, q95 = intervals.widen_for_trend(q80, spread), intervals.widen_for_trend(q95, spread)
    lo80, hi80 = intervals.apply(point, q80)
    lo95, hi95 = intervals.apply(point, q95)
    all_scores = tuple(sorted(scores.values(), key=lambda s: s.mase))
    return _result(
        future_ts, point, lo80, hi80, lo95, hi95, chosen_name, step, periods, chosen,
        baseline, all_scores, plan.horizon, int(plan.origins.size), n, nonnegative,
    )  # fmt: skip


def _result(
    ts, point, lo80, hi80, lo95, hi95, model, step, periods, chosen, baseline, scores,
    h_bt, n_orig, n, nonnegative,
) -> ForecastResult:  # fmt: skip
    if nonnegative:
        point, lo80, hi80, lo95, hi95 = (
            np.maximum(a, 0.0) for a in (point, lo80, hi80, lo95, hi95)
        )
    return ForecastResult(
        timestamps=ts, yhat=point, lower80=lo80, upper80=hi80, lower95=lo95, upper95=hi95,
        model=model, step=step, periods=tuple(periods), chosen=chosen, baseline=baseline,
        scores=scores, backtest_horizon=h_bt, backtest_origins=n_orig, history_points=n,
    )  # fmt: skip

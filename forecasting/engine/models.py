"""Forecasting models behind one small interface.

Every model answers one question: given the series ``y`` on a regular grid,
parameters fitted on ``y[:fit_end]`` only, what does it forecast for the next
``horizon`` steps from each origin ``o`` (using ``y[:o]``)? Answering it for
many origins at once is what makes rolling-origin backtests cheap: the
smoothing states are computed in one pass and every origin reads its own.
The final forecast is the same call with ``fit_end = origins = [n]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from forecasting.engine.smoothing import damped_sum, damped_trend_states, ses_levels


@dataclass(frozen=True)
class SeriesContext:
    """A series on a regular grid: values, epoch-second timestamps and step."""

    values: np.ndarray
    timestamps: np.ndarray
    step: float

    @property
    def n(self) -> int:
        return int(self.values.size)


class ForecastModel(ABC):
    """A forecasting method that can produce forecasts from many origins at once."""

    name: str
    #: how many observations the model needs before its first origin
    min_history: int = 2

    @abstractmethod
    def paths(
        self, ctx: SeriesContext, fit_end: int, origins: np.ndarray, horizon: int
    ) -> np.ndarray:
        """Forecasts of shape (len(origins), horizon); row i starts at ``origins[i]``."""


def _steps(horizon: int) -> np.ndarray:
    return np.arange(1, horizon + 1)


def _same_phase_index(origins: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Index of the latest observed value in the same seasonal phase as each target."""
    return origins[:, None] - period + (_steps(horizon)[None, :] - 1) % period


class SeasonalNaive(ForecastModel):
    """Repeat the last observed season. The baseline every other model must beat."""

    def __init__(self, period: int = 1) -> None:
        self.period = max(1, int(period))
        self.name = "naive" if self.period == 1 else f"seasonal_naive[{self.period}]"
        self.min_history = self.period

    def paths(self, ctx, fit_end, origins, horizon):
        return ctx.values[_same_phase_index(np.asarray(origins), horizon, self.period)]


class SeasonalMean(ForecastModel):
    """Average (or median) of the last ``seasons`` seasons at the same phase.

    Averaging several past weeks is far less noisy than repeating one, which
    is why it often beats the seasonal naive on bursty web traffic; the
    median variant ignores one-off spikes in the history.
    """

    def __init__(self, period: int, seasons: int = 4, robust: bool = False) -> None:
        self.period = int(period)
        self.seasons = int(seasons)
        self.robust = robust
        kind = "median" if robust else "mean"
        self.name = f"seasonal_{kind}[{self.period}x{self.seasons}]"
        self.min_history = self.period * self.seasons

    def paths(self, ctx, fit_end, origins, horizon):
        base = _same_phase_index(np.asarray(origins), horizon, self.period)
        stack = np.stack([ctx.values[base - k * self.period] for k in range(self.seasons)])
        return np.median(stack, axis=0) if self.robust else stack.mean(axis=0)


def seasonal_profile(values: np.ndarray, period: int, max_seasons: int = 8) -> np.ndarray:
    """Additive seasonal indices by absolute phase (i % period), summing to zero.

    Classical decomposition: remove a centred moving average of one period,
    then average what is left per phase over the most recent ``max_seasons``
    seasons, so the profile follows slow changes in the daily/weekly shape.
    """
    y = np.asarray(values, dtype=float)
    n = y.size
    if period < 2 or n < 2 * period:
        return np.zeros(max(period, 1))
    csum = np.concatenate([[0.0], np.cumsum(y)])
    ma = (csum[period:] - csum[:-period]) / period  # ma[j] = mean(y[j:j+period])
    if period % 2:
        centre = np.arange(ma.size) + (period - 1) // 2
        trend = ma
    else:
        trend = 0.5 * (ma[:-1] + ma[1:])
        centre = np.arange(trend.size) + period // 2
    detrended = y[centre] - trend
    keep = centre >= n - max_seasons * period
    phase = centre[keep] % period
    sums = np.bincount(phase, weights=detrended[keep], minlength=period)
    counts = np.bincount(phase, minlength=period)
    profile = np.divide(sums, counts, out=np.zeros(period), where=counts > 0)
    return profile - profile.mean()


class _Deseasonalised(ForecastModel):
    """Shared plumbing: remove an additive seasonal profile, model, add it back."""

    def __init__(self, period: int) -> None:
        self.period = max(1, int(period))
        self.min_history = max(2 * self.period, 10)

    def _split(self, ctx: SeriesContext, fit_end: int) -> tuple[np.ndarray, np.ndarray]:
        if self.period < 2:
            return ctx.values, np.zeros(1)
        profile = seasonal_profile(ctx.values[:fit_end], self.period)
        adjusted = ctx.values - profile[np.arange(ctx.n) % self.period]
        return adjusted, profile

    def _season(self, profile: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        if self.period < 2:
            return np.zeros((origins.size, horizon))
        target = origins[:, None] + _steps(horizon)[None, :] - 1
        return profile[target % self.period]


#: grid of smoothing parameters; coarse on purpose, the backtest decides anyway
ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9)
BETAS = (0.0, 0.02, 0.1)
PHIS = (0.9, 0.98)


class DampedTrendSmoothing(_Deseasonalised):
    """Holt's damped additive trend on the seasonally adjusted series (ETS(A,Ad,A)-like).

    The damped trend is the single exponential-smoothing model that did best
    across the M competitions: it follows a trend without extrapolating it
    forever, which matters for horizons up to a year. Parameters are picked
    from a small grid by one-step-ahead squared error on the fitting window.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.name = f"damped_trend[{self.period}]"

    def _fit(self, x: np.ndarray) -> tuple[float, float, float]:
        burn = min(max(self.period, 10), x.size // 2)
        best, best_sse = (0.2, 0.0, 0.98), np.inf
        for alpha in ALPHAS:
            for beta in BETAS:
                for phi in PHIS if beta > 0 else (1.0,):
                    level, trend = damped_trend_states(x, alpha, beta, phi, x[0], 0.0)
                    pred = level[:-1] + phi * trend[:-1]
                    sse = float(np.sum((x[burn + 1 :] - pred[burn:]) ** 2))
                    if np.isfinite(sse) and sse < best_sse:
                        best, best_sse = (alpha, beta, phi), sse
        return best

    def paths(self, ctx, fit_end, origins, horizon):
        origins = np.asarray(origins)
        adjusted, profile = self._split(ctx, fit_end)
        alpha, beta, phi = self._fit(adjusted[:fit_end])
        last = int(origins.max())
        level, trend = damped_trend_states(adjusted[:last], alpha, beta, phi, adjusted[0], 0.0)
        lvl, trd = level[origins - 1], trend[origins - 1]
        out = lvl[:, None] + trd[:, None] * damped_sum(phi, horizon)[None, :]
        return out + self._season(profile, origins, horizon)


class Theta(_Deseasonalised):
    """The Theta method (Assimakopoulos & Nikolopoulos 2000, as SES with drift).

    Equivalent (Hyndman & Billah 2003) to simple exponential smoothing plus
    half the slope of a straight line fitted to the history, applied to the
    seasonally adjusted series. Cheap and robust; it won the M3 competition.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.name = f"theta[{self.period}]"

    def paths(self, ctx, fit_end, origins, horizon):
        origins = np.asarray(origins)
        adjusted, profile = self._split(ctx, fit_end)
        fit = adjusted[:fit_end]
        burn = min(max(self.period, 10), fit.size // 2)
        best_alpha, best_sse = 0.2, np.inf
        for alpha in ALPHAS:
            level = ses_levels(fit, alpha, fit[0])
            sse = float(np.sum((fit[burn + 1 :] - level[burn:-1]) ** 2))
            if sse < best_sse:
                best_alpha, best_sse = alpha, sse
        slope = float(np.polyfit(np.arange(fit.size, dtype=float), fit, 1)[0])
        level = ses_levels(adjusted[: int(origins.max())], best_alpha, adjusted[0])
        drift = 0.5 * slope * (_steps(horizon) - 1 + 1.0 / best_alpha)
        out = level[origins - 1][:, None] + drift[None, :]
        return out + self._season(profile, origins, horizon)


class ProphetModel(ForecastModel):
    """Facebook Prophet, fitted once on the fitting window (MAP, no sampling).

    Costly (a Stan optimisation per fit), so it is optional and the backtest
    fits it once at the first origin rather than at every origin: its paths
    from later origins are the same forecast read further out, which is a
    conservative estimate of its accuracy. The import is inside the method so
    that Django start-up never loads Stan.
    """

    name = "prophet"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.min_history = 14

    def _fit_predict(self, ts: np.ndarray, y: np.ndarray, future: np.ndarray) -> np.ndarray:
        import logging
        import warnings

        import pandas as pd
        from prophet import Prophet

        for noisy in ("prophet", "cmdstanpy"):
            logger = logging.getLogger(noisy)
            logger.setLevel(logging.ERROR)
            logger.propagate = False
            logger.disabled = True  # cmdstanpy resets its level on first use
        span = ts[-1] - ts[0]
        model = Prophet(
            uncertainty_samples=0,
            daily_seasonality=bool(np.median(np.diff(ts)) < 86_400 and span >= 2 * 86_400),
            weekly_seasonality=bool(span >= 14 * 86_400),
            yearly_seasonality=bool(span >= 2 * 365 * 86_400),
        )
        frame = pd.DataFrame({"ds": pd.to_datetime(ts, unit="s"), "y": y})
        with warnings.catch_warnings():
            # Prophet's own pandas deprecations are not ours to act on
            warnings.simplefilter("ignore")
            model.fit(frame, seed=self.seed)
            pred = model.predict(pd.DataFrame({"ds": pd.to_datetime(future, unit="s")}))
        return pred["yhat"].to_numpy(dtype=float)

    def paths(self, ctx, fit_end, origins, horizon):
        origins = np.asarray(origins)
        last_target = int(origins.max()) + horizon
        future_idx = np.arange(fit_end, last_target)
        future_ts = ctx.timestamps[-1] + ctx.step * (future_idx - ctx.n + 1)
        pred = self._fit_predict(ctx.timestamps[:fit_end], ctx.values[:fit_end], future_ts)
        index = origins[:, None] - fit_end + _steps(horizon)[None, :] - 1
        return pred[index]

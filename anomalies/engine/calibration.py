"""Turn raw detector statistics into tail probabilities that mean the same on every series.

Raw statistics (a z-score, a CUSUM sum, a run length) have different distributions on
different series: a |z| of 4 is routine on a bursty Twitter count and unheard of on a smooth
CPU gauge. Each statistic is therefore compared with its *own* history on *its own* series:
we keep a running log-normal fit (mean and variance of log(stat + offset)) and report the
surprisal -log10 P(stat >= observed) of the current value under that fit. Surprisals are
comparable across methods and series, which is what lets one threshold serve a whole fleet.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

LN10 = np.log(10.0)


def surprisal_from_z(z: np.ndarray) -> np.ndarray:
    """-log10 of the upper Gaussian tail beyond z."""
    return -log_ndtr(-z) / LN10


def score_from_surprisal(surprisal: np.ndarray, half: float) -> np.ndarray:
    """Map a surprisal in [0, inf) to a score in [0, 1): 0.5 at `half`, 0.75 at 2*half.

    A saturating map keeps the order (so any threshold on scores is a threshold on tail
    probabilities) while staying readable with a few decimals in a CSV.
    """
    return 1.0 - np.exp2(-np.maximum(surprisal, 0.0) / half)


def surprisal_from_score(score: np.ndarray | float, half: float) -> np.ndarray | float:
    """Inverse of score_from_surprisal, for thresholds that operators give as scores."""
    return -half * np.log2(np.maximum(1.0 - np.asarray(score), 1e-300))


class TailCalibrator:
    """Running tail model of k statistics for S series, updated one time step at a time.

    Only the tail matters, and a fit of the whole distribution lets the bulk (all the tiny
    z-scores) dictate the tail. So the model is peaks-over-threshold: the running rate of
    values above a per-statistic `hurdle` (1 for a z-score, 0 for a CUSUM or a flat-run
    length, which sit at exactly 0 most of the time) times a log-normal fit of the
    exceedances. P(stat >= x) = rate * P(lognormal >= x); its -log10 is the surprisal. The update is winsorised at 4 standard deviations: an anomaly must not teach
    the calibrator that anomalies are normal. State is plain arrays, so it serialises.
    """

    def __init__(
        self,
        n_series: int,
        hurdles: tuple[float, ...],
        span: float,
        log: bool = True,
        min_sd: float = 0.25,
    ) -> None:
        n_stats = len(hurdles)
        self.hurdles = np.asarray(hurdles, dtype=float)[None, :]
        self.span = span
        self.log = log
        self.min_sd = min_sd
        self.count = np.zeros((n_series, n_stats))
        self.positive = np.zeros((n_series, n_stats))
        self.rate = np.ones((n_series, n_stats))
        self.mean = np.zeros((n_series, n_stats))
        self.var = np.zeros((n_series, n_stats))

    def surprisal_and_update(self, stats: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Surprisal of `stats` (S, k) under the fit so far, then learn from them (where valid)."""
        pos = stats > self.hurdles
        u = np.log(np.where(pos, stats, 1.0)) if self.log else stats
        # The floor keeps a statistic that never moved from turning its first small change
        # into an infinitely surprising event.
        sd = np.maximum(np.sqrt(self.var), self.min_sd)
        z = (u - self.mean) / sd
        tail = np.log10(np.maximum(self.rate, 1e-4)) - surprisal_from_z(z)
        ready = (self.count >= 8) & (self.positive >= 4)
        out = np.where(ready & pos, np.maximum(-tail, 0.0), 0.0)

        v = valid[:, None] if valid.ndim == 1 else valid
        a_rate = np.maximum(2.0 / (self.span + 1.0), 1.0 / (self.count + 1.0))
        self.rate = np.where(v, self.rate + a_rate * (pos - self.rate), self.rate)
        self.count = np.where(v, self.count + 1.0, self.count)
        learn = v & pos
        a = np.maximum(2.0 / (self.span + 1.0), 1.0 / (self.positive + 1.0))
        u_clip = np.where(self.positive >= 8, np.minimum(u, self.mean + 4.0 * sd), u)
        d = u_clip - self.mean
        self.mean = np.where(learn, self.mean + a * d, self.mean)
        self.var = np.where(learn, (1.0 - a) * (self.var + a * d * d), self.var)
        self.positive = np.where(learn, self.positive + 1.0, self.positive)
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {
            "count": self.count,
            "positive": self.positive,
            "rate": self.rate,
            "mean": self.mean,
            "var": self.var,
        }

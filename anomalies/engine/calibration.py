"""Turn raw detector statistics into tail probabilities that mean the same on every series.

Raw statistics (a z-score, a CUSUM sum, a run length) have different distributions on
different series: a |z| of 4 is routine on a bursty Twitter count and unheard of on a smooth
CPU gauge. Each statistic is therefore compared with its *own* history on *its own* series:
we keep a running model of its upper tail and report the surprisal -log10 P(stat >= observed)
of the current value under that model. Surprisals are comparable across methods and series,
which is what lets one threshold serve a whole fleet.
"""

from __future__ import annotations

import numpy as np

LN10 = np.log(10.0)


def score_from_surprisal(surprisal: np.ndarray, half: float) -> np.ndarray:
    """Map a surprisal in [0, inf) to a score in [0, 1): 0.5 at `half`, 0.75 at 2*half.

    A saturating map keeps the order (so any threshold on scores is a threshold on tail
    probabilities) while staying readable with a few decimals in a CSV.
    """
    return 1.0 - np.exp2(-np.maximum(surprisal, 0.0) / half)


class TailCalibrator:
    """Running tail model of k statistics for S series, updated one time step at a time.

    Only the tail matters, so the model is peaks-over-threshold (Pickands; Siffer et al.,
    "Anomaly detection in streams with extreme value theory", KDD 2017) with the
    exponential member of the generalised Pareto family: the running rate of values above a
    per-statistic `hurdle` times exp(-excess / mean excess). P(stat >= x) =
    rate * exp(-(x - hurdle) / beta); its -log10 is the surprisal. A light-tailed series has
    a small mean excess, so a 9-sigma point is news; a bursty one has a large mean excess
    and the same point is not. Updates are winsorised at 6 mean excesses, so one anomaly
    does not teach the calibrator that anomalies are normal. State is plain arrays.
    """

    def __init__(
        self, n_series: int, hurdles: tuple[float, ...], span: float, min_beta: float = 0.1
    ) -> None:
        n_stats = len(hurdles)
        self.hurdles = np.asarray(hurdles, dtype=float)[None, :]
        self.span = span
        self.min_beta = min_beta
        self.count = np.zeros((n_series, n_stats))
        self.positive = np.zeros((n_series, n_stats))
        self.rate = np.ones((n_series, n_stats))
        self.beta = np.ones((n_series, n_stats))

    def surprisal_and_update(self, stats: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Surprisal of `stats` (S, k) under the fit so far, then learn from them (where valid)."""
        excess = stats - self.hurdles
        pos = excess > 0.0
        beta = np.maximum(self.beta, self.min_beta)
        tail = -np.log10(np.maximum(self.rate, 1e-4)) + np.maximum(excess, 0.0) / (beta * LN10)
        ready = (self.count >= 8) & (self.positive >= 4)
        out = np.where(ready & pos, tail, 0.0)

        v = valid[:, None] if valid.ndim == 1 else valid
        a_rate = np.maximum(2.0 / (self.span + 1.0), 1.0 / (self.count + 1.0))
        self.rate = np.where(v, self.rate + a_rate * (pos - self.rate), self.rate)
        self.count = np.where(v, self.count + 1.0, self.count)
        learn = v & pos
        a = np.maximum(2.0 / (self.span + 1.0), 1.0 / (self.positive + 1.0))
        clipped = np.where(self.positive >= 8, np.minimum(excess, 6.0 * beta), excess)
        self.beta = np.where(learn, self.beta + a * (clipped - self.beta), self.beta)
        self.positive = np.where(learn, self.positive + 1.0, self.positive)
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {
            "count": self.count,
            "positive": self.positive,
            "rate": self.rate,
            "beta": self.beta,
        }

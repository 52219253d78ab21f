"""A value beyond the range the series has shown: the novelty that ranking alone misses.

Ranking evidence against the series' own history (evidence.py) has a blind spot on bursty
series. The scales adapt after the first bursts, so a later burst half again as high can
carry less evidence than the earlier ones and rank below them, while the operator looking
at the chart sees the highest value in weeks. On the NAB Twitter volumes two labelled
bursts (159 and 205 tweets against an earlier maximum of 120) scored below the alert level
for exactly that reason.

This stage keeps, per series, the highest and lowest value seen. Each relaxes towards the
expected value at the pace of `range_span` points, so a one-off extreme is forgotten after
a few months of five-minute data instead of silencing the stage forever. A point beyond
the range by more than `range_margin` of its width earns `range_bonus` of ranked surprisal
per doubling of that excess, for points past the series' burn-in (the caller's count of
valid points says which: the stage keeps no counter of its own). The caller caps rank
plus bonus by the raw evidence, so a new extreme that the methods themselves find ordinary
(a Gaussian series' range still widening in its second week) stays quiet; with that cap,
gating the bonus on the point's rank or on a longer maturity changed nothing measured.
"""

from __future__ import annotations

import numpy as np

from .config import DetectorConfig, alpha


class RangeRecord:
    """Running high and low of S series, updated one time step at a time."""

    def __init__(self, n_series: int, config: DetectorConfig) -> None:
        self.config = config
        self.high = np.full(n_series, np.nan)
        self.low = np.full(n_series, np.nan)

    def bonus_and_update(
        self, y: np.ndarray, valid: np.ndarray, expected: np.ndarray, scored: np.ndarray
    ) -> np.ndarray:
        """Ranked-surprisal bonus (S,) of the values `y` against the range, then learn them.

        Every valid point moves the range; only `scored` ones (past the burn-in) earn.
        """
        cfg = self.config
        high, low = self.high, self.low
        # NaN (no range yet, or no value) compares false and so earns nothing.
        with np.errstate(invalid="ignore"):
            excess = np.fmax(y - high, low - y) / np.maximum(high - low, 1e-12)
            earns = valid & scored & (excess > cfg.range_margin)
        doublings = np.log2(np.where(earns, excess, cfg.range_margin) / cfg.range_margin)
        bonus = cfg.range_bonus * doublings

        # fmax / fmin ignore the NaN of a series' first value, which so starts the range.
        k = alpha(cfg.range_span)
        mid = np.where(np.isfinite(expected), expected, y)
        self.high = np.where(valid, np.fmax(y, high - k * (high - mid)), high)
        self.low = np.where(valid, np.fmin(y, low - k * (low - mid)), low)
        return bonus

    def state(self) -> dict[str, np.ndarray]:
        return {"high": self.high, "low": self.low}

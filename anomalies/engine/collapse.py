"""Collapse: a positive series falling to a small fraction of what was expected.

Throughput, price and temperature series live on a multiplicative scale: their noise grows
with their level, so the residual scale the other statistics use is set by the busy hours.
A fall from 0.2 to 0.001 is then "3 standard deviations" on a series whose noise is
measured in tenths, although it is a 99.5 % collapse, the failure an operator most wants to
hear about (an ad exchange that stopped bidding, a sensor that died). Measured as a ratio
it is what it is: log(0.001 / 0.2) is -5.3, against that series' usual multiplicative
wobble of 0.17.

The statistic is a fact about the point, scored outside the calibrator like flatlines and
missing data: the calibrator only speaks about a statistic after four exceedances, and a
series' first collapse is the one that matters. Log deviations from the expected value are
taken as Laplace with the series' running mean absolute log deviation `d` (updated with
steps clipped at `winsor` times `d`, so a collapse does not widen its own yardstick); a
point at most half its expected value has surprisal -log(value / expected) / (d ln 10).

It does not apply everywhere:
* only downwards (a surge is the residual and surge views' business), and only to a
  point at most half its expected value: a smaller dip is the residual views' to judge
  (the figures below are the same with the gate at a quarter, at 0.9 or without it);
* only to series positive at almost every recent point (`POSITIVE_SHARE`): on an error
  ratio or a count that is sometimes 0, small values are sampling noise. Without this the
  demo world's error ratios raised 5 more alerts a week away from its incidents;
* not to a value of exactly 0 or below, which is left to the residual views and the
  flatline statistic: on an error ratio it is the first 0 ever seen, not a collapse (4
  more alerts a week in the demo world when it counted as a fall to 1/1000), and on a
  series in the thousands the residual already measures it.

NAB development subset 73.8 -> 75.4 (the ad-exchange window where a price fell to 0.001,
peak 0.73 -> 0.90; spans of 24 to 960 points give 75.2-75.4); held-out archetypes 79.1 ->
79.3; demo world unchanged (1 alert a week away from its incidents, every incident found).
"""

from __future__ import annotations

import numpy as np

from .calibration import LN10
from .config import DetectorConfig, alpha

# Share of recent points (over the calibration span) that must have been positive.
POSITIVE_SHARE = 0.999
# A point counts as a collapse at or below this fraction of its expected value.
HALVED = np.log(0.5)
# Points before the yardstick means anything.
SETTLE = 8


def new_collapse_state(n_series: int) -> dict[str, np.ndarray]:
    return {"positive": np.zeros(n_series), "log_dev": np.zeros(n_series)}


def collapse_surprisal(
    state: dict[str, np.ndarray],
    y: np.ndarray,
    expected: np.ndarray,
    valid: np.ndarray,
    count: np.ndarray,
    cfg: DetectorConfig,
) -> np.ndarray:
    """-log10 P(a fall this deep) for each series' new point (S,); 0 unless it collapsed.

    Updates the state in place: the share of positive points and the log-deviation scale.
    """
    share, log_dev = state["positive"], state["log_dev"]
    measured = valid & (expected > 0) & (y > 0)
    ratio = np.log(np.where(measured, y, 1.0) / np.where(measured, expected, 1.0))
    yardstick = np.maximum(log_dev, 1e-3)
    collapsed = measured & (share >= POSITIVE_SHARE) & (count > SETTLE) & (ratio <= HALVED)
    surprisal = np.where(collapsed, -ratio / (yardstick * LN10), 0.0)

    step = np.maximum(alpha(cfg.collapse_span), 1.0 / (count + 1.0))
    deviation = np.abs(ratio)
    deviation = np.where(count > SETTLE, np.minimum(deviation, cfg.winsor * yardstick), deviation)
    state["log_dev"] = np.where(measured, log_dev + step * (deviation - log_dev), log_dev)
    share_step = np.maximum(alpha(cfg.calibration_span), 1.0 / (count + 1.0))
    state["positive"] = np.where(valid, share + share_step * ((y > 0) - share), share)
    return surprisal

"""An operator's tuning of one series' verdict: how rare a point must be, and which way.

Sentry's anomaly alerts and Datadog's anomaly monitors both let the person who owns a
series say "less often" and "only when it goes up": a latency that falls is good news,
and a noisy queue depth that pages weekly is not worth a page at the default rarity.

The ranked evidence is the surprisal of a point's evidence against the series' own
history (-log10 of the share of past points with at least as much, evidence.py), so a
sensitivity is a share of points: at the default a point alerts when it is in about the
top 0.3 % of its series' history, at "high" the top 1 %, at "low" the top 0.1 %. It is
applied as a factor on the ranked evidence (the alert level stays where the pause and the
episodes expect it), and the cap by raw evidence scales with it: "high" also lets a point
the methods find less improbable alert.

Direction masks the deviations the operator does not care about, judged by the residual
view that carries the evidence, the most improbable of the point, short and medium views
(a point just after a dip is back above its expected value, but the short average
holding the dip is what makes it abnormal). A masked deviation still opens the alert
pause (streaming.py), so its echo does not alert the other way: a direction only takes
alerts away. A stalled series (a stuck value, missing points) has no direction and is
kept either way, and an operator's threshold rule always fires: both are said outright,
not inferred.

Neither changes what the detector learns, only what it concludes, so a tuning can be
changed at any time without rebuilding a series' state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The share of a series' points that alert at each sensitivity ("medium" is the detector's
# own alert level, whatever the configuration sets it to).
SENSITIVITY_SHARE = {"low": 1e-3, "high": 1e-2}
SENSITIVITIES = ("low", "medium", "high")
DIRECTIONS = {"both": 0, "above": 1, "below": -1}


@dataclass(frozen=True)
class Tuning:
    sensitivity: str = "medium"
    direction: str = "both"

    def __post_init__(self) -> None:
        if self.sensitivity not in SENSITIVITIES:
            raise ValueError(f"sensitivity must be one of {', '.join(SENSITIVITIES)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")


def alert_surprisal(alert_score: float, half_surprisal: float) -> float:
    """The ranked surprisal at which the score reaches the alert level."""
    return -half_surprisal * math.log2(1.0 - alert_score)


def evidence_factor(sensitivity: str, alert_at: float) -> float:
    """What the ranked evidence is multiplied by so that the alert level falls on the
    sensitivity's share of points (1 at "medium")."""
    share = SENSITIVITY_SHARE.get(sensitivity)
    return 1.0 if share is None else alert_at / -math.log10(share)


def tuned_evidence(
    ranked: np.ndarray,
    lean: np.ndarray,
    stalled: np.ndarray,
    factor: np.ndarray,
    direction: np.ndarray,
    stalled_vote: float,
) -> np.ndarray:
    """Ranked evidence (S, T) after each series' factor (S,) and direction (S,: +1, -1, 0).

    `lean` is which way each point's evidence points (its sign; the detector's strongest
    residual view). A point leaning the wrong way keeps no evidence unless the series
    stalled there (`stalled` at or above `stalled_vote`).
    """
    out = ranked * factor[:, None]
    if not direction.any():
        return out
    wrong = (lean * direction[:, None] < 0) & (stalled < stalled_vote)
    return np.where(wrong, 0.0, out)

"""Flatline: a value that stopped moving, judged by how this series usually repeats itself.

A stuck exporter repeats its last value. Whether a run of repeats is news depends on the
series: a float gauge never repeats, a CPU percentage rounded to 0.1 repeats one point in
ten, a gauge refreshed every ten scrapes repeats nine times in ten. The run length used to
go through the tail calibrator like any statistic, and every point of the run taught the
calibrator that long runs are normal: on a rounded CPU series stuck for 17 hours the
evidence peaked at 6.6 forty points in and sank to 3.3 by the end, and the flatline was
found after 200 points, or not at all.

Here repeats are a two-state Markov chain (the last point moved / repeated). A point's
surprisal is -log10 of the probability of it repeating given the previous state, summed
over the current run (fading over `FADE_SPAN` points, capped at `CAP`), so the evidence
grows with every stuck point. The transition
probabilities are decayed counts shrunk towards the series' overall repeat rate with
`PRIOR` pseudo-points: a series that has never repeated has no runs to learn continuation
from, and without the prior its first stuck run would teach itself, within a few points,
that runs go on. The run's own repeats are learned too, so a series that has become
constant for good (or was always constant) earns next to nothing per point: its repeat
rate and continuation both tend to one.
"""

from __future__ import annotations

import numpy as np

from .config import alpha

# Pseudo-points of the overall repeat rate behind each transition probability.
PRIOR = 50.0
# The run's evidence leaks away over this many points, so what stays is the evidence of the
# recent repeats: once a series has been constant long enough for repeats to be its normal,
# the per-point surprisal is near zero and the sum fades instead of staying high for good.
FADE_SPAN = 288.0
# ...and stops growing at p = 1e-15: more repeats tell an operator nothing new, and evidence
# that kept doubling would re-open the alert pause (pause.py escalates at twice the opening
# alert's evidence, and the lowest alerting evidence is 9.4) every few hours of one outage.
CAP = 15.0
_KEYS = ("run", "surprisal", "points", "repeats", "moved", "moved_repeat", "held", "held_repeat")


def new_flatline_state(n_series: int) -> dict[str, np.ndarray]:
    return {k: np.zeros(n_series) for k in _KEYS}


def flatline_surprisal(
    state: dict[str, np.ndarray],
    y: np.ndarray,
    previous: np.ndarray,
    valid: np.ndarray,
    span: float,
) -> np.ndarray:
    """Surprisal (S,) of the current run of repeated values, then learn this step.

    `previous` is the last valid value (NaN before the first); a missing point neither
    breaks nor extends a run.
    """
    with np.errstate(invalid="ignore"):
        same = valid & (np.abs(y - previous) <= 1e-9 * (np.abs(y) + 1e-9))
    in_run = state["run"] > 0
    rate = (state["repeats"] + 1.0) / (state["points"] + 2.0)
    after_move = (state["moved_repeat"] + PRIOR * rate) / (state["moved"] + PRIOR)
    after_repeat = (state["held_repeat"] + PRIOR * rate) / (state["held"] + PRIOR)
    p = np.where(in_run, after_repeat, after_move)
    step = -np.log10(np.clip(p, 1e-12, 1.0))
    carried = np.where(in_run, state["surprisal"] * (1.0 - alpha(FADE_SPAN)), 0.0)
    total = np.where(same, np.minimum(carried + step, CAP), 0.0)

    keep = np.where(valid, 1.0 - alpha(span), 1.0)
    learn = valid.astype(float)
    state["points"] = state["points"] * keep + learn
    state["repeats"] = state["repeats"] * keep + same
    from_move = learn * ~in_run
    from_repeat = learn * in_run
    state["moved"] = state["moved"] * keep + from_move
    state["moved_repeat"] = state["moved_repeat"] * keep + from_move * same
    state["held"] = state["held"] * keep + from_repeat
    state["held_repeat"] = state["held_repeat"] * keep + from_repeat * same
    state["run"] = np.where(valid, np.where(same, state["run"] + 1.0, 0.0), state["run"])
    state["surprisal"] = np.where(valid, total, state["surprisal"])
    return np.where(valid, total, 0.0)

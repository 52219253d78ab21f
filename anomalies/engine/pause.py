"""The alert pause: one incident raises one alert, and the next incident still raises one.

After an alert, a series' scores are damped for `cooldown_seconds`, counted in the series'
own sampling steps so that an hourly series is not silenced for twelve days by a pause
sized for five-minute data. A pause must not hide the next, different incident either.
Two things mark one:

- a point with `escalation` times the raw evidence of the alert that opened the pause
  (a much larger incident);
- a fresh run of `escalation_run` points in a row that would each alert on their own
  (a sustained incident after a brief spike: a spike opened the pause, the series went
  back to normal, and now it has been abnormal for half an hour). The run must start
  after the opening alert's own run has ended, so a level shift that opened the pause
  does not raise it again every half hour.

The run used to need the opening alert's raw evidence at every point. A routine spike's
evidence is larger than that of each point of a moderate outage, so a two-hour latency
outage that began a few hours after a spike alert stayed hidden (held-out archetypes:
latency 60.3 without the change, with `sustained.py` making its points alert-worthy).

Either alerts again and opens a new pause. (While an anomaly is open, the service folds
such a point into it.) The pause carries across calls in three numbers per series, so
scoring in chunks gives the scores of one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DetectorConfig


@dataclass
class PauseState:
    left: int = 0  # points of the current pause still to come
    bar: float = 0.0  # raw evidence of the alert that opened it
    # Alert-worthy points in a row inside it; OPENING_RUN (negative) while the run of the
    # alert that opened the pause is still going.
    run: int = 0


OPENING_RUN = -(10**9)


def damp_repeats(
    scores: np.ndarray,
    evidence: np.ndarray,
    state: PauseState,
    step: float | np.ndarray,
    cfg: DetectorConfig,
) -> PauseState:
    """Damp `scores` (one series' new points, in place) inside alert pauses.

    `evidence` is the raw evidence of the same points and `step` the series' sampling step
    in seconds, one for all or as known at each point (a pause is sized by the step when it
    opens, so scores stay causal when a scrape interval changes). Returns the pause state
    after the last point.
    """
    n = scores.size
    steps = np.broadcast_to(np.asarray(step, dtype=float), (n,))
    left, bar, run = state.left, state.bar, state.run
    j = 0
    while j < n:
        if left > 0:
            stop = min(n, j + left)
            runs = _run_lengths(scores[j:stop] >= cfg.alert_score, run)
            sustained = (runs >= cfg.escalation_run) & (cfg.escalation_run > 0)
            larger = (evidence[j:stop] > cfg.escalation * bar) & (cfg.escalation > 0)
            escalates = np.flatnonzero((scores[j:stop] >= cfg.alert_score) & (sustained | larger))
            k = stop if escalates.size == 0 else j + int(escalates[0])
            scores[j:k] *= cfg.cooldown_damping
            left -= k - j
            j = k
            if escalates.size == 0:
                run = int(runs[-1])
                continue
        else:
            hits = np.flatnonzero(scores[j:] >= cfg.alert_score)
            if hits.size == 0:
                break
            j += int(hits[0])
        left, bar, run = _cooldown_points(steps[j], cfg), float(evidence[j]), OPENING_RUN
        j += 1
    return PauseState(left, bar, run)


def _cooldown_points(step: float, cfg: DetectorConfig) -> int:
    """The pause in points at this sampling step (a minute while the step is unknown)."""
    step = step if np.isfinite(step) and step > 0 else 60.0
    return max(1, round(cfg.cooldown_seconds / step))


def _run_lengths(above: np.ndarray, carry: int) -> np.ndarray:
    """Length of the run of True ending at each position, continuing a run of `carry`."""
    idx = np.arange(above.size)
    last_false = np.maximum.accumulate(np.where(above, -1, idx))
    runs = idx - last_false
    return np.where(last_false < 0, runs + carry, runs)

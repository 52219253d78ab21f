"""Would this rule have fired? A detection rule replayed over one series' history.

An operator choosing a threshold needs to know how noisy it is before saving it (Grafana,
Datadog and Prometheus's UI preview an alert rule over history the same way). The answer
must never disagree with the scoring job, so this module does not judge breaches itself:
it calls `rules.evaluate_rules`, the function the streaming detector calls, with the
silence rule the detector applies (a breach does not carry over `SILENT_STEPS` of the
series' step, the step learned by `pattern.typical_step`), and only groups the points it
marks into episodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .pattern import SILENT_STEPS, STEP_BAND, STEP_RATE
from .rules import ThresholdRule, evaluate_rules


@dataclass(frozen=True)
class RuleEpisode:
    """One breach that lasted long enough to fire (times in epoch seconds)."""

    started_at: float  # first breaching point of the run
    fired_at: float  # first point at which the rule fired (min_duration_seconds after)
    ended_at: float  # last breaching point of the run
    ongoing: bool  # still breaching at the last point read
    start_known: bool  # False: already breaching at the first point read (began earlier)
    peak: float  # the breaching value farthest beyond the threshold it crossed
    points: int  # breaching points in the run


@dataclass(frozen=True)
class RulePreview:
    episodes: list[
        RuleEpisode
    ]  # those firing at or after `since` (the newest `limit`), oldest first
    count: int  # all of them, listed or not
    breaching_points: int  # points at or after `since` beyond the threshold
    firing_points: int  # points at or after `since` at which the rule fired
    step_seconds: float  # the series' step as the detector learns it (inf: unknown)
    max_gap_seconds: float  # a breach does not carry over a wider gap (inf: none)


def learned_step(ts: np.ndarray) -> float:
    """The sampling step the streaming detector has learned after seeing `ts` (inf: none)."""
    steps = learned_steps(ts)
    return float(steps[-1]) if steps.size else np.inf


def learned_steps(ts: np.ndarray) -> np.ndarray:
    """The step the streaming detector had learned at each point of `ts` (inf: none yet).

    The detector judges a silence against the step it has learned so far, not the one it
    will learn later: a series scraped every minute and later every ten minutes broke a
    breach on a 30-minute silence while it was at one minute. The detector moves its
    estimate with `pattern.typical_step` at every interval. Only an interval outside the
    estimate's band moves it, so the replay jumps from one such interval to the next: a
    regular month of ten-second points is a handful of updates, not 259,200 calls.
    """
    ts = np.asarray(ts, dtype=float)
    out = np.full(ts.shape, np.inf)
    pos = np.flatnonzero(np.isfinite(ts))
    dt = np.diff(ts[pos])
    at = pos[1:][dt > 0]  # the point each interval ends at
    dt = dt[dt > 0]
    moved_at: list[int] = []
    moved_to: list[float] = []
    intervals = dt.tolist()
    step = np.inf
    quiet = i = 0
    while i < dt.size:
        if quiet >= _QUIET_SCAN and np.isfinite(step):
            # A long calm stretch: find the next interval outside the band with numpy.
            block = dt[i : i + 4096]
            moves = np.flatnonzero((block > STEP_BAND * step) | (block * STEP_BAND < step))
            if moves.size == 0:
                i += block.size
                continue
            i += int(moves[0])
        moved = _typical_step(step, intervals[i])
        if moved != step:
            moved_at.append(int(at[i]))
            moved_to.append(moved)
            quiet = 0
        else:
            quiet += 1
        step = moved
        i += 1
    if moved_at:
        k = np.searchsorted(np.array(moved_at), np.arange(ts.size), side="right") - 1
        out = np.where(k >= 0, np.array(moved_to)[np.maximum(k, 0)], np.inf)
    return out


# Calm intervals in a row before the replay looks for the next move with numpy: an
# irregular series (pushed on change) moves its step at nearly every interval, and a numpy
# scan and call per interval took 8.7 s for a month of 5-15 s intervals (0.3 s now).
_QUIET_SCAN = 32


def _typical_step(step: float, dt: float) -> float:
    """`pattern.typical_step` on plain floats (the same float64 arithmetic, without an
    array per call; the agreement with the detector is tested)."""
    if not math.isfinite(step):
        return dt
    if dt > STEP_BAND * step:
        return step * (1 + STEP_RATE)
    if dt * STEP_BAND < step:
        return step / (1 + STEP_RATE)
    return step


def preview_rule(
    ts: np.ndarray,
    values: np.ndarray,
    rule: ThresholdRule,
    *,
    since: float = -np.inf,
    step_seconds: float | None = None,
    coarse_until: float | None = None,
    coarse_step: float | None = None,
    limit: int | None = None,
) -> RulePreview:
    """The episodes in which `rule` would have fired on this series, as the job fires it.

    Points before `since` are history only: they tell how long a breach going on at
    `since` had already lasted (read at least `min_duration_seconds` before it, or a breach
    that began before the window fires late). An episode is listed when it fires at or
    after `since`, including one that fired earlier and still goes on there.

    `step_seconds` is the series' step (default: learned from the points, as the detector
    learns it). Points before `coarse_until` are coarser (hourly rollups past the raw
    retention, `coarse_step` wide): a gap there is judged against their own width, not
    the raw step, or every hourly point would break the breach. `limit` lists only the
    newest episodes (`count` has them all): a flapping threshold fires thousands of times.
    """
    ts = np.asarray(ts, dtype=float)
    values = np.asarray(values, dtype=float)
    if ts.shape != values.shape or ts.ndim != 1:
        raise ValueError("ts and values must be one-dimensional arrays of the same length")
    coarse = np.zeros(ts.shape, dtype=bool)
    if coarse_until is not None and coarse_step is not None:
        coarse = ts < coarse_until
    if step_seconds is None:
        # Each gap judged against the step learned by then, as the job judged it.
        fine = learned_steps(ts[~coarse])
        # Before its first interval, the first raw point (after the rollups) is judged
        # with the first step learned: inf would join it to any rollup point before.
        known = fine[np.isfinite(fine)]
        fine[~np.isfinite(fine)] = known[0] if known.size else np.inf
        steps = np.full(ts.shape, np.inf)
        steps[~coarse] = fine
        step_seconds = float(steps[~coarse][-1]) if (~coarse).any() else np.inf
    else:
        steps = np.full(ts.shape, float(step_seconds))
    fine_gap = SILENT_STEPS * step_seconds if np.isfinite(step_seconds) else np.inf
    max_gap: float | np.ndarray = SILENT_STEPS * steps
    if coarse.any():
        # A point's gap is judged at the coarser grain of itself and the point before it.
        grain = np.where(coarse, SILENT_STEPS * float(coarse_step), max_gap)
        max_gap = np.maximum(grain, np.r_[grain[:1], grain[:-1]])
    _, fired_by_rule, _ = evaluate_rules(ts, values, [rule], {}, max_gap=max_gap)
    fired = fired_by_rule[rule.name]
    hit = rule.breached(values)
    with np.errstate(invalid="ignore"):
        broken = np.r_[False, np.diff(ts) > (max_gap[1:] if np.ndim(max_gap) else max_gap)]
    # Runs of breaching points, cut where the breach stops or a gap breaks it: the same
    # runs evaluate_rules measures. Vectorised: a flapping threshold on a month of
    # ten-second points is 65,000 runs.
    starts = hit & (~np.r_[False, hit[:-1]] | broken)
    run_of = np.cumsum(starts) - 1  # the run of each breaching point
    idx = np.flatnonzero(hit)
    runs = run_of[idx]
    n_runs = int(starts.sum())
    first = np.flatnonzero(starts)
    last = idx[np.r_[np.flatnonzero(np.diff(runs)), runs.size - 1]] if n_runs else first
    sizes = np.bincount(runs, minlength=n_runs)
    # A rule fires on a suffix of its run (from min_duration_seconds in on), so a run fires
    # in the window when it fires at all and its last point is in it.
    fired_idx = np.flatnonzero(fired)
    fired_runs, at = np.unique(run_of[fired_idx], return_index=True)
    first_fired = np.full(n_runs, -1)
    first_fired[fired_runs] = fired_idx[at]
    # The breaching value farthest beyond its threshold, per run.
    order = np.lexsort((-_excess(values[idx], rule), runs))
    peak_at = idx[order[np.r_[0, np.flatnonzero(np.diff(runs[order])) + 1]]] if n_runs else first
    keep = np.flatnonzero((first_fired >= 0) & (ts[last] >= since))
    count = int(keep.size)
    if limit is not None:
        keep = keep[max(count - limit, 0) :]
    columns = zip(
        ts[first[keep]].tolist(),
        ts[first_fired[keep]].tolist(),
        ts[last[keep]].tolist(),
        (last[keep] == hit.size - 1).tolist(),
        (first[keep] > 0).tolist(),
        values[peak_at[keep]].tolist(),
        sizes[keep].tolist(),
        strict=True,
    )
    episodes = [RuleEpisode(*row) for row in columns]
    in_window = ts >= since
    return RulePreview(
        episodes=episodes,
        count=count,
        breaching_points=int((hit & in_window).sum()),
        firing_points=int((fired & in_window).sum()),
        step_seconds=float(step_seconds),
        max_gap_seconds=float(fine_gap),
    )


def _excess(values: np.ndarray, rule: ThresholdRule) -> np.ndarray:
    """How far each value lies beyond the threshold it crosses (0 within bounds)."""
    excess = np.zeros(values.shape)
    if rule.above is not None:
        excess = np.maximum(excess, values - rule.above)
    if rule.below is not None:
        excess = np.maximum(excess, rule.below - values)
    return excess

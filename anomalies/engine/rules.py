"""Business-rules family: operator thresholds that must hold for a minimum duration.

Some limits are known in advance ("error ratio above 5% for 5 minutes is an incident"),
whatever the statistics say. A rule fires at the first point where its condition has held
continuously for `min_duration_seconds`; the time the current breach began is kept in the
streaming state so that a breach spanning two scoring runs is still measured correctly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# A rule breach is an anomaly by definition: alone it must clear the alert score, whatever
# the statistical families say.
RULE_SURPRISAL = 18.0


@dataclass(frozen=True)
class ThresholdRule:
    name: str
    above: float | None = None
    below: float | None = None
    min_duration_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.above is None and self.below is None:
            raise ValueError(f"rule {self.name!r} needs `above` or `below`")
        if self.min_duration_seconds < 0:
            raise ValueError(f"rule {self.name!r}: min_duration_seconds must be >= 0")

    def breached(self, values: np.ndarray) -> np.ndarray:
        hit = np.zeros(values.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            if self.above is not None:
                hit |= values > self.above
            if self.below is not None:
                hit |= values < self.below
        return hit

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_rules(
    ts: np.ndarray,
    values: np.ndarray,
    rules: list[ThresholdRule],
    breach_since: dict[str, float | None],
    *,
    prev_ts: float = np.nan,
    max_gap: float | np.ndarray = np.inf,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float | None]]:
    """Which points fire each rule, for one series.

    Returns the rule-family surprisal per point, the boolean firing mask per rule name and
    the updated `breach_since` (start time of a breach still ongoing at the last point).
    A breach is continuous only across points at most `max_gap` apart (`prev_ts` is the
    series' point before `ts`): one breaching point, three hours without data, then
    another do not show that the value held for 30 minutes (as in Prometheus, where a
    series gone stale resets its alert's `for`). `max_gap` may be given per point (the
    gap before each point), for history whose older part is coarser (rule_preview.py).
    """
    fired: dict[str, np.ndarray] = {}
    since_out: dict[str, float | None] = {}
    surprisal = np.zeros(values.shape[0])
    with np.errstate(invalid="ignore"):
        broken = (ts - np.r_[prev_ts, ts[:-1]]) > max_gap
    for rule in rules:
        hit = rule.breached(values)
        # Start of the run each point belongs to: carried in from the previous run if the
        # breach was already going on, else the first breaching timestamp of the run.
        starts = np.where(hit & (~np.r_[False, hit[:-1]] | broken), ts, np.nan)
        if hit.size and hit[0] and not broken[0] and breach_since.get(rule.name) is not None:
            starts[0] = breach_since[rule.name]
        run_start = _forward_fill(starts)
        run_start = np.where(hit, run_start, np.nan)
        with np.errstate(invalid="ignore"):
            mask = hit & (ts - run_start >= rule.min_duration_seconds)
        fired[rule.name] = mask
        surprisal = np.where(mask, RULE_SURPRISAL, surprisal)
        last = run_start[-1] if hit.size else np.nan
        since_out[rule.name] = None if not np.isfinite(last) else float(last)
    return surprisal, fired, since_out


def _forward_fill(x: np.ndarray) -> np.ndarray:
    idx = np.where(np.isfinite(x), np.arange(x.size), 0)
    np.maximum.accumulate(idx, out=idx)
    return x[idx] if x.size else x

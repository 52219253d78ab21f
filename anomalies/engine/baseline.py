"""Expected value and scale of the next point, from three competing causal predictors.

Operational series differ: some follow the clock (traffic has a daily and weekly shape),
others only drift (a queue length). Rather than guessing, each series runs three predictors
side by side and uses, at every step, the one whose recent absolute error is smallest:

* the local level (an exponential average over `level_span` points);
* a slow baseline plus the hour-of-day profile of the deviation from it;
* the same baseline plus the hour-of-week profile.

The profiles are exactly "the expected profile" that learns recurring patterns: something
that happens every Monday at 09:00 ends up in the hour-of-week slot and stops being
surprising. The state is a handful of arrays shaped (series,) or (series, slots).
"""

from __future__ import annotations

import numpy as np

from .config import DetectorConfig, alpha

DAY_SLOTS = 24
WEEK_SLOTS = 168
# 1970-01-01 was a Thursday; shift so that slot 0 of the week is Monday 00:00 UTC.
_EPOCH_WEEKDAY_OFFSET_HOURS = 72
# Mean absolute deviation times this is the standard deviation of a Gaussian.
MAD_TO_SD = 1.2533


def hour_slots(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hour-of-day slot, hour-of-week slot, day number and week number of epoch seconds."""
    hours = np.floor(np.nan_to_num(ts) / 3600.0).astype(np.int64)
    day_slot = hours % DAY_SLOTS
    week_hours = hours + _EPOCH_WEEKDAY_OFFSET_HOURS
    week_slot = week_hours % WEEK_SLOTS
    return day_slot, week_slot, hours // DAY_SLOTS, week_hours // WEEK_SLOTS


def new_baseline_state(n_series: int) -> dict[str, np.ndarray]:
    return {
        "level": np.zeros(n_series),
        "base": np.zeros(n_series),
        "err": np.zeros((n_series, 3)),
        "day_profile": np.zeros((n_series, DAY_SLOTS)),
        "day_cycles": np.zeros((n_series, DAY_SLOTS)),
        "day_last": np.full((n_series, DAY_SLOTS), -1.0),
        "week_profile": np.zeros((n_series, WEEK_SLOTS)),
        "week_cycles": np.zeros((n_series, WEEK_SLOTS)),
        "week_last": np.full((n_series, WEEK_SLOTS), -1.0),
        # One correction per predictor (level, day, week): see `update_baseline`.
        "week_residual": np.zeros((n_series, 3, WEEK_SLOTS)),
    }


class Expectation:
    """What the predictors expect at one time step for every series (read-only snapshot)."""

    __slots__ = (
        "candidates",
        "choice",
        "correction",
        "expected",
        "profile",
        "profile_scale",
        "raw_expected",
        "scale",
        "scales",
        "warm",
    )

    def __init__(self, state: dict[str, np.ndarray], slots: tuple, cfg: DetectorConfig) -> None:
        day_slot, week_slot, _, _ = slots
        rows = np.arange(state["level"].shape[0])
        level, base = state["level"], state["base"]
        floor = cfg.relative_scale_floor * np.abs(level) + 1e-9
        day_warm = state["day_cycles"][rows, day_slot] >= 2
        week_warm = state["week_cycles"][rows, week_slot] >= 2
        e_day = np.where(day_warm, base + state["day_profile"][rows, day_slot], level)
        e_week = np.where(week_warm, base + state["week_profile"][rows, week_slot], e_day)
        self.candidates = np.stack([level, e_day, e_week], axis=1)
        # Which candidates are themselves (a cold profile falls back to another predictor).
        self.warm = np.stack([np.ones_like(day_warm), day_warm, week_warm], axis=1)
        self.scales = np.maximum(MAD_TO_SD * state["err"], floor[:, None])
        self.choice = np.argmin(state["err"], axis=1)
        # What the chosen predictor keeps getting wrong at this hour of the week (a batch
        # job every Tuesday 16:00) is learned as a correction, shrunk while it has few
        # cycles behind it: recurring patterns become part of the expected profile.
        cycles = state["week_cycles"][rows, week_slot]
        shrink = np.where(cycles >= 2, cycles / (cycles + 2.0), 0.0)
        self.correction = shrink * state["week_residual"][rows, self.choice, week_slot]
        self.raw_expected = self.candidates[rows, self.choice]
        self.expected = self.raw_expected + self.correction
        self.scale = self.scales[rows, self.choice]
        # The best clock-based predictor, used by the pattern family's profile deviation;
        # NaN where no profile has two cycles of history yet.
        prof_choice = 1 + np.argmin(state["err"][:, 1:], axis=1)
        any_warm = day_warm | week_warm
        self.profile = np.where(
            any_warm, self.candidates[rows, prof_choice] + self.correction, np.nan
        )
        self.profile_scale = self.scales[rows, prof_choice]


def update_baseline(
    state: dict[str, np.ndarray],
    y: np.ndarray,
    valid: np.ndarray,
    count: np.ndarray,
    step_seconds: np.ndarray,
    slots: tuple,
    exp: Expectation,
    cfg: DetectorConfig,
) -> None:
    """Learn from the observed values (in place), winsorised so anomalies barely move it."""
    day_slot, week_slot, day_no, week_no = slots
    rows = np.arange(y.shape[0])
    warm = 1.0 / (count + 1.0)
    k = cfg.winsor
    y0 = np.where(valid, y, 0.0)

    abs_err = np.abs(y0[:, None] - exp.candidates)
    a_err = np.maximum(alpha(cfg.error_span), warm)[:, None]
    clipped = np.minimum(abs_err, k * exp.scales)
    state["err"] = np.where(
        valid[:, None], state["err"] + a_err * (clipped - state["err"]), state["err"]
    )

    level_scale = exp.scales[:, 0]
    a_level = np.maximum(alpha(cfg.level_span), warm)
    d_level = np.clip(y0 - state["level"], -k * level_scale, k * level_scale)
    d_level = np.where(count < 2, y0 - state["level"], d_level)
    state["level"] = np.where(valid, state["level"] + a_level * d_level, state["level"])

    a_base = np.maximum(alpha(cfg.baseline_span), warm)
    d_base = np.clip(y0 - state["base"], -k * level_scale, k * level_scale)
    d_base = np.where(count < 2, y0 - state["base"], d_base)
    state["base"] = np.where(valid, state["base"] + a_base * d_base, state["base"])

    # Profile memory is counted in cycles, whatever the sampling step.
    per_cycle = np.maximum(3600.0 / np.maximum(step_seconds, 1.0), 1.0)
    a_prof = 2.0 / (cfg.profile_span * per_cycle + 1.0)
    # The weekly residual learns without winsorising: a recurring event is large by nature.
    prev_cycles = state["week_cycles"][rows, week_slot]
    a_res = np.where(prev_cycles < 1, 1.0, np.maximum(a_prof, 0.5 / (prev_cycles + 1.0)))
    # Each predictor keeps its own correction, learned from its own misses while it is warm
    # (a cold profile stands in with the local level). One shared correction, learned from
    # whichever predictor was chosen at the time, went stale when the choice changed:
    # misses of the local level in the first days, before the daily profile was warm, came
    # back a week later on top of the daily profile, which already predicted them, as a
    # phantom anomaly (a square wave expected at 86 where it had never exceeded 68).
    res = state["week_residual"][rows, :, week_slot]
    miss = y0[:, None] - exp.candidates
    # Before the burn-in the predictors are still converging (at the first point the level
    # is 0): their misses say nothing about this hour of the week and, learned at full
    # weight, came back as a phantom spike in the same slot every week.
    settled = (valid & (count >= cfg.burn_in))[:, None] & exp.warm
    state["week_residual"][rows, :, week_slot] = np.where(
        settled, res + a_res[:, None] * (miss - res), res
    )

    deviation = y0 - state["base"]
    for name, slot, cycle, idx in (
        ("day", day_slot, day_no, 1),
        ("week", week_slot, week_no, 2),
    ):
        prof = state[f"{name}_profile"]
        cycles = state[f"{name}_cycles"]
        last = state[f"{name}_last"]
        current = prof[rows, slot]
        n_cyc = cycles[rows, slot]
        a = np.where(n_cyc < 1, 1.0, np.maximum(a_prof, 0.5 / (n_cyc + 1.0)))
        scale = exp.scales[:, idx]
        d = np.clip(deviation - current, -k * scale, k * scale)
        d = np.where(n_cyc < 2, deviation - current, d)
        prof[rows, slot] = np.where(valid, current + a * d, current)
        new_cycle = valid & (last[rows, slot] != cycle)
        cycles[rows, slot] = n_cyc + new_cycle
        last[rows, slot] = np.where(valid, cycle, last[rows, slot])

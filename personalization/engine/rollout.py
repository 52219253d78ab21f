"""Percentage rollout of a shipped variant: which targeted users are in at ``percent``.

A ship used to reach every targeted user at once. GrowthBook and LaunchDarkly ramp it
instead (10 %, then 50 %, then 100 %), so a bad winner hurts a few users before it
hurts everyone. Three properties matter, and each is why the code looks as it does:

- **Deterministic and sticky**: the same user is in or out on every server and after a
  restart, with nothing stored. Membership is a hash of the experiment key and the user
  id: GrowthBook's v2 hash (``assignment.growthbook_hash``), a position in [0, 1) on a
  grid of 10,000, so a GrowthBook SDK rollout rule with the same seed and
  ``coverage = percent / 100`` reproduces it.
- **Monotone in the percentage**: a user is in iff their position is below
  ``percent / 100``. Raising the percentage only adds users (nobody who saw the
  variant at 10 % loses it at 50 %); lowering it removes the ones added last.
- **Independent of the arm the user had**: the seed is salted (``rollout:<key>``), so
  the position is not the variant-bucketing position. Unsalted, a 50 % rollout of a
  50/50 experiment would have been exactly the control's users (the same hash cut at
  the same point): the ramp's first users would all have been the run's control arm,
  who never saw the variant. The colon cannot occur in an experiment key (a slug), so
  the salted seed is never another experiment's bucketing seed.

Resolution: a percentage admits ``ceil(percent * 100)`` of the 10,000 positions, so
any percentage is honoured to within 0.01 % of the audience.

A scheduled ramp (+``step`` % every ``hours``) is a sequence of such percentages
(``ramp_next_percent``); monotonicity is what makes it safe to automate: each step only
adds users.
"""

from __future__ import annotations

import math

from .assignment import growthbook_hash

ROLLOUT_SALT = "rollout"
MIN_PERCENT = 0.0
MAX_PERCENT = 100.0
FULL_ROLLOUT = MAX_PERCENT
# A scheduled ramp's period: the beat job checks every few minutes, and a month
# between steps is a schedule nobody is watching any more.
MIN_RAMP_HOURS = 0.25
MAX_RAMP_HOURS = 24.0 * 30


def rollout_seed(experiment_key: str) -> str:
    """The hash seed of an experiment's rollout (not its bucketing seed, the bare key)."""
    return f"{ROLLOUT_SALT}:{experiment_key}"


def rollout_position(*, experiment_key: str, user_id: str) -> float:
    """The user's place in the rollout order of this experiment, in [0, 1)."""
    return growthbook_hash(rollout_seed(experiment_key), str(user_id), 2)


def in_rollout(*, experiment_key: str, user_id: str, percent: float) -> bool:
    """Whether ``user_id`` is among the first ``percent`` % of the experiment's audience.

    100 admits everyone without hashing (the full ship, the common case, costs nothing).
    """
    if percent >= FULL_ROLLOUT:
        return True
    if percent <= MIN_PERCENT:
        return False
    return rollout_position(experiment_key=experiment_key, user_id=user_id) < percent / 100.0


def rollout_percent_error(value: object) -> str | None:
    """Why ``value`` is not a rollout percentage, or None. Shared by the API, the admin,
    the CLI and the service, so each refuses the same input with the same words.

    A boolean is refused although Python counts it as a number: ``true`` in a body is a
    mistake, not 1 %.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number between 0 and 100"
    if not math.isfinite(value) or not MIN_PERCENT <= value <= MAX_PERCENT:
        return f"must be between 0 and 100 (got {value})"
    return None


def rollout_percent_parse(text: str) -> tuple[float | None, str | None]:
    """A percentage typed in a form or on the command line: (value, None) or (None, why)."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        return None, f"must be a number between 0 and 100 (got {text!r})"
    error = rollout_percent_error(value)
    return (None, error) if error else (value, None)


def ramp_next_percent(percent: float, step: float) -> float:
    """The next step of a scheduled ramp: up by ``step``, never past 100."""
    return min(FULL_ROLLOUT, percent + step)


def ramp_errors(step: object, hours: object) -> dict[str, str]:
    """Why a scheduled ramp (+``step`` % every ``hours``) is refused, by field name;
    both are given or neither (a step without a period would never run)."""
    if step is None and hours is None:
        return {}
    if step is None:
        return {"ramp_step_percent": "required with ramp_every_hours"}
    if hours is None:
        return {"ramp_every_hours": "required with ramp_step_percent"}
    errors = {}
    if isinstance(step, bool) or not isinstance(step, int | float):
        errors["ramp_step_percent"] = "must be a number above 0, at most 100"
    elif not math.isfinite(step) or not 0 < step <= MAX_PERCENT:
        errors["ramp_step_percent"] = f"must be above 0 and at most 100 (got {step})"
    if isinstance(hours, bool) or not isinstance(hours, int | float):
        errors["ramp_every_hours"] = (
            f"must be a number of hours, {MIN_RAMP_HOURS}-{MAX_RAMP_HOURS:g}"
        )
    elif not math.isfinite(hours) or not MIN_RAMP_HOURS <= hours <= MAX_RAMP_HOURS:
        errors["ramp_every_hours"] = (
            f"must be between {MIN_RAMP_HOURS} and {MAX_RAMP_HOURS:g} hours (got {hours})"
        )
    return errors

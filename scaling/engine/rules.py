"""Scaling rules and the proposals they make.

A rule looks at one metric reading and proposes a number of units. Rules never
look at history, cooldowns or bounds: combining proposals, stabilising
scale-down and respecting cooldowns is the job of :mod:`scaling.engine.decision`,
so that every rule type is judged by the same policy.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from enum import StrEnum

# Floating-point guard: 0.7 * 10 / 0.7 must give 10 units, not 11.
_CEIL_EPSILON = 1e-9


class RuleKind(StrEnum):
    TARGET_TRACKING = "target_tracking"
    STEP = "step"
    QUEUE_BACKLOG = "queue_backlog"


@dataclass(frozen=True)
class StepAdjustment:
    """Add ``change`` units when ``lower <= metric < upper`` (``upper=None``: no top)."""

    lower: float
    upper: float | None
    change: int

    def matches(self, value: float) -> bool:
        return value >= self.lower and (self.upper is None or value < self.upper)


def steps_overlap(steps: list[StepAdjustment] | tuple[StepAdjustment, ...]) -> str | None:
    """Why the step ranges overlap, or None.

    The first matching step wins, so with ``[0.8, inf) +1`` listed before ``[0.9, inf) +3``
    a reading of 0.95 got +1; AWS step scaling refuses overlapping ranges for this reason.
    """
    ordered = sorted(steps, key=lambda s: s.lower)
    for low, high in itertools.pairwise(ordered):
        if low.upper is None or low.upper > high.lower:
            top = "inf" if low.upper is None else f"{low.upper:g}"
            return (
                f"step [{low.lower:g}, {top}) overlaps step [{high.lower:g}, ...): "
                "ranges must not overlap (give every step but the top one an upper bound)"
            )
    return None


@dataclass(frozen=True)
class ScalingRule:
    """One way of turning a metric into a desired number of units.

    ``target`` means the target metric value for target tracking (e.g. 0.6 CPU
    utilisation) and the acceptable backlog per unit for queue-backlog rules.
    ``critical`` turns a reading at or above it into an emergency.
    """

    name: str
    metric: str
    kind: RuleKind
    target: float = 0.7
    tolerance: float = 0.1
    steps: tuple[StepAdjustment, ...] = ()
    critical: float | None = None
    cooldown_up_seconds: float = 60.0
    cooldown_down_seconds: float = 300.0
    priority: int = 100
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.kind in (RuleKind.TARGET_TRACKING, RuleKind.QUEUE_BACKLOG) and self.target <= 0:
            raise ValueError(f"rule {self.name!r}: target must be > 0")
        if self.tolerance < 0:
            raise ValueError(f"rule {self.name!r}: tolerance must be >= 0")
        if self.kind == RuleKind.STEP and not self.steps:
            raise ValueError(f"rule {self.name!r}: a step rule needs at least one step")


@dataclass(frozen=True)
class Proposal:
    """What one source (a rule, the predictor, the emergency path) wants, and why."""

    source: str
    desired_units: int
    reason: str
    emergency: bool = False
    predictive: bool = False
    cooldown_up_seconds: float = 0.0
    cooldown_down_seconds: float = 0.0
    priority: int = 100
    metric_value: float | None = field(default=None, compare=False)


def ceil_units(x: float) -> int:
    """Units needed for ``x`` units of work, robust to float noise (10.0000000001 -> 10)."""
    return max(0, math.ceil(x - _CEIL_EPSILON))


def target_tracking_units(
    current_units: int, metric: float, target: float, tolerance: float
) -> int:
    """The Kubernetes HPA formula: ``ceil(current * metric / target)`` outside the tolerance.

    Inside the band ``|metric/target - 1| <= tolerance`` the current size is kept,
    which is what stops the controller from chasing noise.
    """
    ratio = metric / target
    if abs(ratio - 1.0) <= tolerance:
        return current_units
    return ceil_units(max(current_units, 1) * ratio)


def units_measured(
    reading_at: float, changes: list[tuple[float, int]] | tuple[tuple[float, int], ...]
) -> int | None:
    """The size a reading taken at ``reading_at`` measured, or None if it measured the current one.

    ``changes`` are the capacity changes as ``(took_effect_at, units_before)``. A reading
    taken before a change took effect describes the size before it: sizing the current
    units from it (``current x metric / target`` again) would apply the same demand twice,
    so a 5-minute metric read every minute would grow the resource on every tick.
    """
    later = [(at, units) for at, units in changes if at > reading_at]
    return min(later)[1] if later else None


def evaluate_rule(
    rule: ScalingRule, value: float, current_units: int, measured_units: int | None = None
) -> Proposal:
    """The proposal of one rule for one reading (``value`` in the rule's metric unit).

    ``measured_units``: the size the reading was taken at when that is no longer the current
    size (see :func:`units_measured`). The proposal is then sized from it, as the reading
    describes that size's load, and it is no emergency: the change made since answered it.
    """
    if not math.isfinite(value):
        raise ValueError(f"rule {rule.name!r}: metric {rule.metric!r} is not a finite number")
    emergency = measured_units is None and rule.critical is not None and value >= rule.critical
    if measured_units is not None:
        current_units = measured_units
    if rule.kind == RuleKind.TARGET_TRACKING:
        desired = target_tracking_units(current_units, value, rule.target, rule.tolerance)
        reason = f"{rule.metric}={value:.3g} vs target {rule.target:.3g}" + (
            " (within tolerance)" if desired == current_units else f": {current_units}->{desired}"
        )
    elif rule.kind == RuleKind.QUEUE_BACKLOG:
        per_unit = value / max(current_units, 1)
        if abs(per_unit / rule.target - 1.0) <= rule.tolerance:
            desired = current_units
        else:
            desired = ceil_units(value / rule.target)
        reason = f"{rule.metric}={value:.0f} queued, {per_unit:.3g}/unit vs {rule.target:.3g}/unit"
    else:
        step = next((s for s in rule.steps if s.matches(value)), None)
        desired = current_units + (step.change if step else 0)
        reason = f"{rule.metric}={value:.3g}: " + (
            f"step [{step.lower:g}, {step.upper if step.upper is not None else 'inf'}) "
            f"{step.change:+d}"
            if step
            else "no step matches"
        )
    if measured_units is not None:
        reason += f" (read at {measured_units} units, before the last change took effect)"
    if emergency:
        reason += f"; EMERGENCY: {value:.3g} >= critical {rule.critical:.3g}"
    return Proposal(
        source=rule.name,
        desired_units=max(desired, 0),
        reason=reason,
        emergency=emergency,
        cooldown_up_seconds=rule.cooldown_up_seconds,
        cooldown_down_seconds=rule.cooldown_down_seconds,
        priority=rule.priority,
        metric_value=value,
    )

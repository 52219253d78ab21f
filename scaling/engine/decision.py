"""Combining proposals into one decision: the policy every rule is judged by.

Order of the steps, and why:

1. the largest proposal wins (under-provisioning costs users, over-provisioning
   only money);
2. prediction only ever adds capacity: a predictive proposal can raise the
   target but never pull it below what real demand (the reactive rules) asks, and
   when no rule has a reading it cannot go below the current size either;
3. emergency (a reading at or above a rule's critical threshold) skips the
   cooldowns and scales by the maximum step, and says so;
4. scale-up is bounded per step (HPA: at most ``max(2 x current, 4)`` units)
   because a metric read at overload underestimates the true demand and a
   bounded step is observed before the next one;
5. scale-down goes only to the largest recommendation of the stabilisation
   window, so capacity does not flap on noise;
6. cooldowns: after a change, wait before the next one in the same direction
   (the new units need time to absorb load before the metric means anything).

A current size outside ``[min_units, max_units]`` (an actuator reported a size the target
chose, or the operator moved the bounds past it) is brought back inside on this decision
whatever the cooldowns say, and even when no rule has a reading, as the Kubernetes HPA
rescales to its bound on its next sync ("Current number of replicas above
Spec.MaxReplicas"): the bounds are the operator's, the cooldowns only pace the rules.
When a cooldown holds the rules' own change, only the step back to the bound is taken.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from .cost import CostImpact, cost_impact, expected_utilization
from .rules import Proposal


class Action(StrEnum):
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    NONE = "none"


class DecisionStatus(StrEnum):
    PROPOSED = "proposed"
    EXECUTED = "executed"
    SKIPPED_COOLDOWN = "skipped_cooldown"
    FAILED = "failed"


@dataclass(frozen=True)
class ResourceState:
    """A scalable resource as the engine sees it at decision time."""

    name: str
    current_units: int
    min_units: int
    max_units: int
    unit_capacity: float
    cost_per_unit_hour: float = 0.0
    target_utilization: float = 0.7
    demand: float | None = None  # current work in capacity units (for expected utilisation)

    def __post_init__(self) -> None:
        if self.min_units < 0 or self.max_units < self.min_units:
            raise ValueError(f"{self.name}: need 0 <= min_units <= max_units")
        if self.unit_capacity <= 0:
            raise ValueError(f"{self.name}: unit_capacity must be > 0")
        if not 0 < self.target_utilization <= 1:
            raise ValueError(f"{self.name}: target_utilization must be in (0, 1]")

    def clamp(self, units: int) -> int:
        return max(self.min_units, min(self.max_units, units))

    def bounds_condition(self) -> str | None:
        """Why the current size is outside the bounds, or None when it is inside."""
        return bounds_condition(self.current_units, self.min_units, self.max_units)


def bounds_condition(current_units: int, min_units: int, max_units: int) -> str | None:
    """Why ``current_units`` lies outside ``[min_units, max_units]``, or None when inside
    (the HPA's "Current number of replicas above Spec.MaxReplicas", said in our terms)."""
    if current_units > max_units:
        return f"current size {current_units} is above max_units {max_units}"
    if current_units < min_units:
        return f"current size {current_units} is below min_units {min_units}"
    return None


@dataclass(frozen=True)
class DecisionPolicy:
    """Knobs of the combination step (defaults are the Kubernetes HPA's)."""

    scale_up_factor: float = 2.0
    scale_up_min_limit: int = 4
    stabilization_window_seconds: float = 300.0
    # Live, prediction never removes capacity: with every rule abstaining (stale or missing
    # readings) a forecast alone holds the current size. The replay sets this: there the
    # forecast, fed the real load up to now, is the demand signal itself.
    prediction_may_scale_down: bool = False

    def scale_up_limit(self, current_units: int) -> int:
        """The HPA's bound: at most ``max(factor x current, min_limit)`` units after one step."""
        return max(int(self.scale_up_factor * current_units), self.scale_up_min_limit)


@dataclass
class ScalingMemory:
    """What a resource remembers between decisions: recent recommendations and last changes.

    Rebuilt from stored decisions by the service, carried in memory by the simulator.
    """

    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    last_scale_up_at: float | None = None
    last_scale_down_at: float | None = None

    def stabilized(self, now: float, window_seconds: float, recommendation: int) -> int:
        """Largest recommendation inside the window (including ``recommendation``)."""
        cutoff = now - window_seconds
        while self.recommendations and self.recommendations[0][0] <= cutoff:
            self.recommendations.popleft()
        return max([recommendation, *(units for _, units in self.recommendations)])

    def remember(self, decision: Decision) -> None:
        self.recommendations.append((decision.at, decision.recommendation))
        if decision.status in (DecisionStatus.PROPOSED, DecisionStatus.EXECUTED):
            if decision.action == Action.SCALE_UP:
                self.last_scale_up_at = decision.at
            elif decision.action == Action.SCALE_DOWN:
                self.last_scale_down_at = decision.at


@dataclass(frozen=True)
class Decision:
    """One decision with everything needed to explain and judge it later."""

    at: float
    resource: str
    current_units: int
    desired_units: int
    recommendation: int  # unstabilised, unbounded target: what the window remembers
    action: Action
    status: DecisionStatus
    winning_sources: tuple[str, ...]
    reasons: tuple[str, ...]
    proposals: tuple[Proposal, ...]
    emergency: bool
    predictive: bool
    cost: CostImpact
    expected_utilization: float | None

    @property
    def changes_capacity(self) -> bool:
        return self.action != Action.NONE and self.status != DecisionStatus.SKIPPED_COOLDOWN


FAILURE_BACKOFF_SECONDS = 300.0
FAILURE_BACKOFF_MAX_SECONDS = 3600.0


def failure_backoff_seconds(
    consecutive_failures: int,
    base: float = FAILURE_BACKOFF_SECONDS,
    cap: float = FAILURE_BACKOFF_MAX_SECONDS,
) -> float:
    """How long to wait after the last of ``consecutive_failures`` failed changes before
    calling the actuator again: ``base`` doubling with each failure, at most ``cap``."""
    if consecutive_failures <= 0:
        return 0.0
    return min(cap, base * 2.0 ** min(consecutive_failures - 1, 32))


def _in_cooldown(last_at: float | None, now: float, seconds: float) -> bool:
    return last_at is not None and now - last_at < seconds


def decide(
    resource: ResourceState,
    proposals: list[Proposal] | tuple[Proposal, ...],
    memory: ScalingMemory,
    now: float,
    policy: DecisionPolicy | None = None,
) -> Decision:
    """Turn the proposals of all rules (and the predictor) into one decision.

    ``memory`` is not written (only recommendations that fell out of the window are
    dropped): call ``memory.remember(decision)`` once the decision is stored, so that a
    dry run leaves no trace.
    """
    policy = policy or DecisionPolicy()
    current = resource.current_units
    reactive = [p for p in proposals if not p.predictive]
    predictive = [p for p in proposals if p.predictive]
    reasons: list[str] = []

    outside = resource.bounds_condition()
    bound = resource.clamp(current)
    if outside:
        reasons.append(f"{outside}: back to {bound} now, cooldowns waived")

    if not proposals:
        return _build(
            resource,
            now,
            current,
            bound,
            _action(current, bound),
            DecisionStatus.PROPOSED,
            (),
            ("no enabled rule has a reading", *reasons),
            (),
            False,
            False,
            recommendation=bound,
        )

    # 1. the largest reactive proposal wins; ties go to the highest priority (lowest number).
    ranked = sorted(reactive, key=lambda p: (-p.desired_units, p.priority))
    winners = [p for p in ranked if p.desired_units == ranked[0].desired_units] if ranked else []
    reactive_target = ranked[0].desired_units if ranked else None
    target = reactive_target if reactive_target is not None else -1
    # 2. prediction only ever adds capacity on top of what real demand asks.
    best_prediction = max(predictive, key=lambda p: p.desired_units, default=None)
    if best_prediction is not None and best_prediction.desired_units > target:
        target = best_prediction.desired_units
        winners = [best_prediction]
        if reactive_target is None and target < current and not policy.prediction_may_scale_down:
            reasons.append(
                f"prediction alone never removes capacity: holding {current} units "
                f"(forecast asks {target}, no rule has a reading)"
            )
            target = current
    recommendation = resource.clamp(target)
    reasons[:0] = [p.reason for p in winners]
    if winners[0].predictive and reactive_target is not None:
        reasons.append(f"predictive: provisions ahead above real demand ({reactive_target} units)")

    # 3. emergency: maximum step, cooldowns skipped.
    emergency_props = [p for p in reactive if p.emergency]
    emergency = bool(emergency_props)
    limit = policy.scale_up_limit(current)
    if emergency:
        target = max(target, limit)
        winners = [*emergency_props, *[w for w in winners if w not in emergency_props]]
        reasons.append(
            f"emergency ({', '.join(p.source for p in emergency_props)}): cooldowns skipped, "
            f"scaling by the maximum step to {resource.clamp(min(target, limit))}"
        )

    # 4. bounded scale-up.
    if target > limit:
        reasons.append(f"scale-up bounded to {limit} units this step (wanted {target})")
        target = limit
    # 5. stabilised scale-down.
    if target < current:
        stable = memory.stabilized(now, policy.stabilization_window_seconds, recommendation)
        if stable > resource.clamp(target):
            reasons.append(
                f"scale-down held at {min(stable, current)} by the stabilisation window "
                f"({policy.stabilization_window_seconds:.0f}s)"
            )
        target = min(current, max(target, stable))
    desired = resource.clamp(target)
    if desired != target:
        reasons.append(f"clamped to [{resource.min_units}, {resource.max_units}]")

    action = _action(current, desired)
    # 6. cooldowns (of the sources that asked for the change).
    status = DecisionStatus.PROPOSED
    if action == Action.SCALE_UP and not emergency:
        wait = max(p.cooldown_up_seconds for p in winners)
        if _in_cooldown(memory.last_scale_up_at, now, wait):
            status = DecisionStatus.SKIPPED_COOLDOWN
            reasons.append(f"skipped: scale-up cooldown of {wait:.0f}s not over")
    elif action == Action.SCALE_DOWN:
        wait = max((p.cooldown_down_seconds for p in winners), default=0.0)
        last_change = max(
            (t for t in (memory.last_scale_up_at, memory.last_scale_down_at) if t is not None),
            default=None,
        )
        if _in_cooldown(last_change, now, wait):
            status = DecisionStatus.SKIPPED_COOLDOWN
            reasons.append(f"skipped: scale-down cooldown of {wait:.0f}s not over")
    if status == DecisionStatus.SKIPPED_COOLDOWN and outside:
        # The cooldown paces the rules' change; the bounds are not the rules' to wait on.
        reasons[-1] = reasons[-1].replace("skipped: ", "") + f": only back to {bound} for now"
        desired, status = bound, DecisionStatus.PROPOSED
    return _build(
        resource,
        now,
        current,
        desired,
        action,
        status,
        tuple(winners),
        tuple(reasons),
        tuple(proposals),
        emergency,
        bool(winners and winners[0].predictive),
        recommendation=recommendation,
    )


def _action(current: int, desired: int) -> Action:
    if desired > current:
        return Action.SCALE_UP
    return Action.SCALE_DOWN if desired < current else Action.NONE


def _build(
    resource: ResourceState,
    now: float,
    current: int,
    desired: int,
    action: Action,
    status: DecisionStatus,
    winners: tuple[Proposal, ...],
    reasons: tuple[str, ...],
    proposals: tuple[Proposal, ...],
    emergency: bool,
    predictive: bool,
    recommendation: int | None = None,
) -> Decision:
    effective = current if status == DecisionStatus.SKIPPED_COOLDOWN else desired
    return Decision(
        at=now,
        resource=resource.name,
        current_units=current,
        desired_units=desired,
        recommendation=current if recommendation is None else recommendation,
        action=action,
        status=status,
        winning_sources=tuple(p.source for p in winners),
        reasons=reasons,
        proposals=proposals,
        emergency=emergency,
        predictive=predictive,
        cost=cost_impact(current, effective, resource.cost_per_unit_hour),
        expected_utilization=(
            None
            if resource.demand is None
            else expected_utilization(resource.demand, effective, resource.unit_capacity)
        ),
    )

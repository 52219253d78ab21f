"""Causal replay of a load trace through the decision engine, and the HPA reference.

Capacity model (the same for both policies): the units decided at step ``t``
(from data up to ``t`` only) serve step ``t+1``. Step ``t+1`` is overloaded
when its load exceeds ``units[t] x unit_capacity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .decision import DecisionPolicy, ResourceState, ScalingMemory, decide
from .forecasters import Forecaster, SeasonalLevelForecaster, median_step_seconds
from .headroom import ErrorScale, HeadroomBudget
from .rules import Proposal, RuleKind, ScalingRule, ceil_units, evaluate_rule, target_tracking_units

HPA_TOLERANCE = 0.1


@dataclass(frozen=True)
class SimulationPolicy:
    """How the replay combines rules. Defaults are the ones measured in docs/scaling.md."""

    decision: DecisionPolicy = field(
        default_factory=lambda: DecisionPolicy(
            stabilization_window_seconds=900.0, prediction_may_scale_down=True
        )
    )
    predictive: bool = True
    startup_seconds: float = 0.0
    tolerance: float = HPA_TOLERANCE
    reactive_target_tracking: bool = False
    real_demand_floor: bool = False
    critical_utilization: float | None = None
    budget_share: float = 0.97
    budget_gain: float = 0.5
    budget_every_steps: int = 12
    budget_window_steps: int = 288
    error_window_steps: int = 288


@dataclass(frozen=True)
class ReplayMetrics:
    steps: int
    overloaded_steps: int
    overloaded_minutes: float
    unit_hours: float
    changes: int
    mean_utilization: float


@dataclass(frozen=True)
class SimulationResult:
    timestamps: np.ndarray
    load: np.ndarray
    units: np.ndarray  # units[t] decided at t, serving t+1
    emergencies: int
    predictive_wins: int


def _validate_trace(
    ts: np.ndarray,
    load: np.ndarray,
    unit_capacity: float,
    min_units: int,
    max_units: int,
    target_utilization: float,
) -> None:
    if ts.shape != load.shape or ts.ndim != 1:
        raise ValueError("timestamps and load must be 1-d arrays of the same length")
    if ts.size < 2:
        raise ValueError("a trace needs at least two points")
    if not np.all(np.isfinite(load)) or np.any(load < 0):
        raise ValueError("load must be finite and >= 0")
    if np.any(np.diff(ts) <= 0):
        raise ValueError("timestamps must be strictly increasing")
    if unit_capacity <= 0:
        raise ValueError("unit_capacity must be > 0")
    if min_units < 1 or max_units < min_units:
        raise ValueError("need 1 <= min_units <= max_units")
    if not 0 < target_utilization <= 1:
        raise ValueError("target_utilization must be in (0, 1]")


def replay_metrics(
    load: np.ndarray, units: np.ndarray, unit_capacity: float, step_seconds: float
) -> ReplayMetrics:
    """Overloaded steps, unit-hours and changes of a units schedule under the capacity model."""
    load = np.asarray(load, dtype=float)
    units = np.asarray(units)
    capacity = units[:-1] * unit_capacity
    served = load[1:]
    overloaded = int(np.sum(served > capacity * (1 + 1e-12)))
    return ReplayMetrics(
        steps=int(served.size),
        overloaded_steps=overloaded,
        overloaded_minutes=overloaded * step_seconds / 60.0,
        unit_hours=float(np.sum(units[:-1]) * step_seconds / 3600.0),
        changes=int(np.sum(units[1:] != units[:-1])),
        mean_utilization=float(np.sum(served) / max(np.sum(capacity), 1e-12)),
    )


def hpa_reference(
    trace_ts: np.ndarray,
    trace_load: np.ndarray,
    unit_capacity: float,
    min_units: int,
    max_units: int,
    target_utilization: float,
    window_seconds: float = 300.0,
) -> np.ndarray:
    """The plain Kubernetes HPA rule, written out on its own (not through our engine).

    desired = ceil(current x utilisation / target) when |utilisation/target - 1| > 0.1;
    scale-up at most max(2 x current, 4); scale-down to the largest recommendation
    of the last ``window_seconds`` (kept after the cutoff, as the HPA controller does).
    """
    ts = np.asarray(trace_ts, dtype=float)
    load = np.asarray(trace_load, dtype=float)
    _validate_trace(ts, load, unit_capacity, min_units, max_units, target_utilization)
    current = max(
        min_units, min(max_units, ceil_units(load[0] / (unit_capacity * target_utilization)))
    )
    history: list[tuple[float, int]] = []
    units = np.empty(load.size, dtype=int)
    for t in range(load.size):
        utilization = load[t] / (current * unit_capacity)
        recommendation = target_tracking_units(
            current, utilization, target_utilization, HPA_TOLERANCE
        )
        history = [(at, r) for at, r in history if at > ts[t] - window_seconds]
        history.append((ts[t], recommendation))
        desired = max(r for _, r in history)
        desired = min(desired, max(2 * current, 4))
        current = max(min_units, min(max_units, desired))
        units[t] = current
    return units


def simulate(
    trace_ts: np.ndarray,
    trace_load: np.ndarray,
    unit_capacity: float,
    min_units: int,
    max_units: int,
    target_utilization: float,
    policy: SimulationPolicy | None = None,
    forecaster: Forecaster | None = None,
) -> SimulationResult:
    """Replay ``trace_load`` through :func:`decide`, causally, and return the units decided.

    At each step the engine sees: the current utilisation (load / serving
    capacity), a "real demand" proposal (capacity needed by the load just
    seen), and, when predictive, a forecast of the next ``lead`` steps computed
    from the history up to now plus budgeted headroom (see ``headroom.py``).
    """
    policy = policy or SimulationPolicy()
    forecaster = forecaster or SeasonalLevelForecaster()
    ts = np.asarray(trace_ts, dtype=float)
    load = np.asarray(trace_load, dtype=float)
    _validate_trace(ts, load, unit_capacity, min_units, max_units, target_utilization)
    step = median_step_seconds(ts)
    lead = max(1, 1 + math.ceil(policy.startup_seconds / step)) if step > 0 else 1

    tracking = ScalingRule(
        name="target tracking",
        metric="utilization",
        kind=RuleKind.TARGET_TRACKING,
        target=target_utilization,
        tolerance=policy.tolerance,
        cooldown_up_seconds=0,
        cooldown_down_seconds=0,
        critical=policy.critical_utilization,
    )
    current = max(
        min_units, min(max_units, ceil_units(load[0] / (unit_capacity * target_utilization)))
    )
    reference = current
    memory = ScalingMemory()
    errors = ErrorScale(window=policy.error_window_steps)
    budget = HeadroomBudget(
        share=policy.budget_share,
        gain=policy.budget_gain,
        every_steps=policy.budget_every_steps,
        window_steps=policy.budget_window_steps,
    )
    pending_forecast: float | None = None
    units = np.empty(load.size, dtype=int)
    emergencies = predictive_wins = 0

    for t in range(load.size):
        now, demand = ts[t], load[t] / unit_capacity
        utilization = demand / current
        proposals: list[Proposal] = []
        if policy.real_demand_floor or not policy.predictive:
            proposals.append(
                Proposal(
                    source="real demand",
                    desired_units=ceil_units(demand),
                    reason=f"load {load[t]:.4g} needs {ceil_units(demand)} units at full use",
                )
            )
        rule_proposal = evaluate_rule(tracking, utilization, current)
        if policy.reactive_target_tracking or rule_proposal.emergency:
            proposals.append(rule_proposal)
        if policy.predictive:
            if pending_forecast is not None:
                errors.add(load[t] - pending_forecast)
            forecast = np.asarray(forecaster(ts[: t + 1], load[: t + 1], lead), dtype=float)
            pending_forecast = float(forecast[0])
            scale = errors.scale()
            peak = float(np.max(forecast[-lead:]))
            upper = (
                peak / target_utilization
                if scale is None
                else max(budget.level_factor * peak + budget.z * scale, 0.0)
            )
            proposals.append(
                Proposal(
                    source="forecast",
                    desired_units=ceil_units(upper / unit_capacity),
                    predictive=True,
                    reason=f"forecast peak {peak:.4g} + headroom -> {upper:.4g} within {lead} step(s)",
                )
            )
        resource = ResourceState(
            name="trace",
            current_units=current,
            min_units=min_units,
            max_units=max_units,
            unit_capacity=1.0,
            target_utilization=target_utilization,
            demand=demand,
        )
        decision = decide(resource, proposals, memory, now, policy.decision)
        memory.remember(decision)
        if decision.changes_capacity:
            current = decision.desired_units
        emergencies += decision.emergency
        predictive_wins += decision.predictive
        units[t] = current
        # The budget's reference: what the plain target-tracking rule would run now.
        reference = max(
            min_units,
            min(
                max_units,
                min(
                    target_tracking_units(
                        reference, demand / reference, target_utilization, policy.tolerance
                    ),
                    policy.decision.scale_up_limit(reference),
                ),
            ),
        )
        budget.observe(current, reference)
    return SimulationResult(
        timestamps=ts,
        load=load,
        units=units,
        emergencies=emergencies,
        predictive_wins=predictive_wins,
    )

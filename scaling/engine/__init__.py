"""The scaling decision engine: pure numpy/scipy, no Django.

Rules propose (``rules``), the policy decides (``decision``), the forecast and
its budgeted headroom provision ahead (``forecasters``, ``headroom``), outcomes
are judged afterwards (``outcome``) and traces are replayed causally
(``simulation``); a total is split over the workers that run it (``spread``).
"""

from .cost import HOURS_PER_MONTH, CostImpact, cost_impact, expected_utilization
from .decision import (
    Action,
    Decision,
    DecisionPolicy,
    DecisionStatus,
    ResourceState,
    ScalingMemory,
    bounds_condition,
    decide,
    failure_backoff_seconds,
)
from .forecasters import Forecaster, SeasonalLevelForecaster, last_value_forecaster
from .headroom import ErrorScale, HeadroomBudget
from .outcome import OutcomeVerdict, judge_outcome, target_band
from .rules import (
    Proposal,
    RuleKind,
    ScalingRule,
    StepAdjustment,
    evaluate_rule,
    steps_overlap,
    target_tracking_units,
    units_measured,
)
from .simulation import (
    ReplayMetrics,
    SimulationPolicy,
    SimulationResult,
    hpa_reference,
    replay_metrics,
    simulate,
)
from .spread import MIN_PER_MEMBER, Spread, spread_units
from .traces import TraceError, read_trace_csv

__all__ = [
    "HOURS_PER_MONTH",
    "MIN_PER_MEMBER",
    "Action",
    "CostImpact",
    "Decision",
    "DecisionPolicy",
    "DecisionStatus",
    "ErrorScale",
    "Forecaster",
    "HeadroomBudget",
    "OutcomeVerdict",
    "Proposal",
    "ReplayMetrics",
    "ResourceState",
    "RuleKind",
    "ScalingMemory",
    "ScalingRule",
    "SeasonalLevelForecaster",
    "SimulationPolicy",
    "SimulationResult",
    "Spread",
    "StepAdjustment",
    "TraceError",
    "bounds_condition",
    "cost_impact",
    "decide",
    "evaluate_rule",
    "expected_utilization",
    "failure_backoff_seconds",
    "hpa_reference",
    "judge_outcome",
    "last_value_forecaster",
    "read_trace_csv",
    "replay_metrics",
    "simulate",
    "spread_units",
    "steps_overlap",
    "target_band",
    "target_tracking_units",
    "units_measured",
]

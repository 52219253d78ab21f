"""Engine tests: known answers, relations and causality. No database, no Django."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling.engine import (
    HOURS_PER_MONTH,
    MIN_PER_MEMBER,
    Action,
    DecisionPolicy,
    DecisionStatus,
    ErrorScale,
    HeadroomBudget,
    Proposal,
    ResourceState,
    RuleKind,
    ScalingMemory,
    ScalingRule,
    SeasonalLevelForecaster,
    StepAdjustment,
    TraceError,
    decide,
    evaluate_rule,
    failure_backoff_seconds,
    hpa_reference,
    judge_outcome,
    last_value_forecaster,
    read_trace_csv,
    replay_metrics,
    simulate,
    spread_units,
    steps_overlap,
    target_tracking_units,
    units_measured,
)

STEP = 300.0


def resource(current: int = 4, **kw) -> ResourceState:
    base = dict(
        name="web",
        current_units=current,
        min_units=1,
        max_units=50,
        unit_capacity=100.0,
        cost_per_unit_hour=0.5,
        target_utilization=0.6,
    )
    base.update(kw)
    return ResourceState(**base)


def proposal(source: str, units: int, **kw) -> Proposal:
    return Proposal(source=source, desired_units=units, reason=f"{source} wants {units}", **kw)


# --- rules -------------------------------------------------------------------------------


def test_target_tracking_is_the_hpa_formula_outside_the_tolerance():
    assert target_tracking_units(4, 0.9, 0.6, 0.1) == 6  # 4 x 0.9 / 0.6 = 6 exactly
    assert target_tracking_units(10, 0.7, 0.7, 0.1) == 10  # no float creep to 11
    assert target_tracking_units(4, 0.65, 0.6, 0.1) == 4  # inside +-10%: keep
    assert target_tracking_units(10, 0.3, 0.6, 0.1) == 5  # scale down outside the band


def test_tolerance_band_edges():
    inside = target_tracking_units(10, 0.6 * 1.09, 0.6, 0.1)
    outside = target_tracking_units(10, 0.6 * 1.2, 0.6, 0.1)
    assert inside == 10 and outside == 12


def test_step_rule_picks_the_matching_band():
    rule = ScalingRule(
        name="cpu steps",
        metric="cpu",
        kind=RuleKind.STEP,
        steps=(
            StepAdjustment(0.0, 0.3, -1),
            StepAdjustment(0.8, 0.9, 1),
            StepAdjustment(0.9, None, 3),
        ),
    )
    assert evaluate_rule(rule, 0.95, 5).desired_units == 8
    assert evaluate_rule(rule, 0.85, 5).desired_units == 6
    assert evaluate_rule(rule, 0.5, 5).desired_units == 5
    assert evaluate_rule(rule, 0.1, 5).desired_units == 4


def test_overlapping_step_ranges_are_named():
    def steps(*triples):
        return [StepAdjustment(lo, hi, ch) for lo, hi, ch in triples]

    # AWS's layout: contiguous ranges, the top one open.
    assert steps_overlap(steps((0.0, 0.3, -1), (0.85, 0.95, 1), (0.95, None, 2))) is None
    assert steps_overlap(steps((0.95, None, 2), (0.85, 0.95, 1))) is None  # any order
    assert "overlaps" in steps_overlap(steps((0.8, None, 1), (0.9, None, 3)))
    assert "overlaps" in steps_overlap(steps((0.8, 0.95, 1), (0.9, None, 3)))


def test_queue_backlog_rule_sizes_by_backlog_per_unit():
    rule = ScalingRule(name="queue", metric="backlog", kind=RuleKind.QUEUE_BACKLOG, target=10.0)
    assert evaluate_rule(rule, 95.0, 2).desired_units == 10
    assert evaluate_rule(rule, 0.0, 3).desired_units == 0


def test_critical_threshold_marks_an_emergency_and_says_so():
    rule = ScalingRule(
        name="cpu", metric="cpu", kind=RuleKind.TARGET_TRACKING, target=0.6, critical=0.95
    )
    calm, hot = evaluate_rule(rule, 0.7, 4), evaluate_rule(rule, 0.97, 4)
    assert not calm.emergency and hot.emergency and "EMERGENCY" in hot.reason


def test_a_reading_taken_before_a_change_is_sized_from_the_units_it_measured():
    # Changes as (took effect at, units before): 4 -> 6 at t=100, 6 -> 9 at t=400.
    changes = [(400.0, 6), (100.0, 4)]
    assert units_measured(50.0, changes) == 4
    assert units_measured(100.0, changes) == 6  # taken as the change took effect: the old size
    assert units_measured(250.0, changes) == 6
    assert units_measured(400.0, changes) is None and units_measured(500.0, changes) is None
    assert units_measured(0.0, []) is None

    cpu = ScalingRule(
        name="cpu", metric="cpu", kind=RuleKind.TARGET_TRACKING, target=0.6, critical=0.95
    )
    # 0.9 read at 4 units asks for 6; the resource has 6 now: nothing more to do.
    assert evaluate_rule(cpu, 0.9, 6, measured_units=4).desired_units == 6
    assert evaluate_rule(cpu, 0.9, 6).desired_units == 9  # the same value read at 6 units
    stale_hot = evaluate_rule(cpu, 0.97, 8, measured_units=4)
    assert not stale_hot.emergency and stale_hot.desired_units == 7  # ceil(4 x 0.97 / 0.6)
    assert "read at 4 units" in stale_hot.reason
    step = ScalingRule(name="api", metric="api", kind=RuleKind.STEP,
                       steps=(StepAdjustment(0.85, None, 1),))  # fmt: skip
    assert evaluate_rule(step, 0.9, 6, measured_units=5).desired_units == 6
    queue = ScalingRule(name="q", metric="q", kind=RuleKind.QUEUE_BACKLOG, target=10.0)
    # 100 queued at 10 units is on target; the resource has 12 since: still 10 needed.
    assert evaluate_rule(queue, 100.0, 12, measured_units=10).desired_units == 10


def test_rule_validation_and_non_finite_readings():
    with pytest.raises(ValueError):
        ScalingRule(name="bad", metric="cpu", kind=RuleKind.TARGET_TRACKING, target=0)
    with pytest.raises(ValueError):
        ScalingRule(name="bad", metric="cpu", kind=RuleKind.STEP)
    rule = ScalingRule(name="cpu", metric="cpu", kind=RuleKind.TARGET_TRACKING)
    with pytest.raises(ValueError):
        evaluate_rule(rule, float("nan"), 3)


# --- decide ------------------------------------------------------------------------------


def test_largest_proposal_wins_and_is_named():
    d = decide(resource(4), [proposal("cpu", 6), proposal("memory", 5)], ScalingMemory(), 0.0)
    assert d.desired_units == 6 and d.action == Action.SCALE_UP
    assert d.winning_sources == ("cpu",)


def test_scale_up_is_bounded_per_step():
    policy = DecisionPolicy()
    d = decide(resource(3), [proposal("cpu", 40)], ScalingMemory(), 0.0, policy)
    assert d.desired_units == policy.scale_up_limit(3) == 6  # max(2 x 3, 4)
    assert any("bounded" in r for r in d.reasons)


def test_scale_down_waits_for_the_stabilisation_window():
    policy = DecisionPolicy(stabilization_window_seconds=600)
    memory = ScalingMemory()
    first = decide(resource(10), [proposal("cpu", 10)], memory, 0.0, policy)
    memory.remember(first)
    held = decide(resource(10), [proposal("cpu", 4)], memory, 300.0, policy)
    assert held.desired_units == 10 and held.action == Action.NONE
    memory.remember(held)
    later = decide(resource(10), [proposal("cpu", 4)], memory, 900.0, policy)
    assert later.desired_units == 4 and later.action == Action.SCALE_DOWN


def test_cooldown_skips_a_second_scale_up_but_emergency_does_not_wait():
    memory = ScalingMemory()
    cool = dict(cooldown_up_seconds=120)
    first = decide(resource(4), [proposal("cpu", 6, **cool)], memory, 0.0)
    memory.remember(first)
    second = decide(resource(6), [proposal("cpu", 8, **cool)], memory, 60.0)
    assert second.status == DecisionStatus.SKIPPED_COOLDOWN
    assert second.cost.per_hour == 0  # nothing changes while skipped
    urgent = decide(resource(6), [proposal("cpu", 7, emergency=True, **cool)], memory, 60.0)
    assert urgent.status == DecisionStatus.PROPOSED and urgent.emergency
    assert urgent.desired_units == DecisionPolicy().scale_up_limit(6)  # the maximum step
    assert any("emergency" in r and "cooldowns skipped" in r for r in urgent.reasons)


def test_prediction_only_adds_capacity():
    memory = ScalingMemory()
    low = decide(
        resource(8), [proposal("cpu", 8), proposal("forecast", 3, predictive=True)], memory, 0.0
    )
    assert low.desired_units == 8 and not low.predictive
    high = decide(
        resource(8), [proposal("cpu", 8), proposal("forecast", 11, predictive=True)], memory, 0.0
    )
    assert high.desired_units == 11 and high.predictive
    assert any("predictive" in r for r in high.reasons)


def test_a_forecast_alone_never_removes_capacity_unless_the_policy_allows_it():
    forecast = proposal("forecast", 3, predictive=True)
    held = decide(resource(8), [forecast], ScalingMemory(), 0.0)
    assert held.action == Action.NONE and held.desired_units == 8
    assert any("never removes capacity" in r for r in held.reasons)
    grow = decide(resource(8), [proposal("forecast", 11, predictive=True)], ScalingMemory(), 0.0)
    assert grow.action == Action.SCALE_UP and grow.desired_units == 11
    replay = DecisionPolicy(stabilization_window_seconds=0, prediction_may_scale_down=True)
    shrink = decide(resource(8), [forecast], ScalingMemory(), 0.0, replay)
    assert shrink.action == Action.SCALE_DOWN and shrink.desired_units == 3


def test_failure_backoff_starts_after_a_failure_doubles_and_is_capped():
    assert failure_backoff_seconds(0) == 0.0
    waits = [failure_backoff_seconds(n, base=60.0, cap=600.0) for n in range(1, 8)]
    assert waits[:3] == [60.0, 120.0, 240.0]
    assert waits == sorted(waits) and max(waits) == 600.0
    assert failure_backoff_seconds(10_000) == failure_backoff_seconds(10_001)  # no overflow


def test_cost_impact_and_expected_utilisation_follow_the_change():
    up = decide(resource(4, demand=300.0), [proposal("cpu", 6)], ScalingMemory(), 0.0)
    down = decide(resource(4, demand=300.0), [proposal("cpu", 3)], ScalingMemory(), 0.0)
    assert up.cost.per_hour == pytest.approx(2 * 0.5)
    assert up.cost.per_month == pytest.approx(up.cost.per_hour * HOURS_PER_MONTH)
    assert down.cost.per_hour < 0 < up.cost.per_hour
    assert up.expected_utilization == pytest.approx(300.0 / (6 * 100.0))
    assert down.expected_utilization > up.expected_utilization


def test_desired_units_respect_min_and_max():
    d = decide(resource(48), [proposal("cpu", 90)], ScalingMemory(), 0.0)
    assert d.desired_units == 50
    d = decide(resource(2, min_units=2), [proposal("cpu", 0)], ScalingMemory(), 0.0)
    assert d.desired_units == 2 and d.action == Action.NONE
    assert not any("stabilisation" in r for r in d.reasons)  # the floor, not the window


def test_a_size_outside_the_bounds_returns_to_the_bound_whatever_the_cooldowns():
    # The actuator reported 12 (a policy, a webhook receiver's choice) where max_units is 6,
    # just after a scale-up: the scale-down cooldown held the resource at 12 until it ended.
    memory = ScalingMemory(last_scale_up_at=0.0)
    cool = dict(cooldown_down_seconds=300)
    over = decide(resource(12, max_units=6), [proposal("cpu", 5, **cool)], memory, 60.0)
    assert over.status == DecisionStatus.PROPOSED and over.action == Action.SCALE_DOWN
    assert over.desired_units == 6  # the bound now; the rules' 5 waits for the cooldown
    assert any("above max_units 6" in r and "cooldowns waived" in r for r in over.reasons)
    assert any("cooldown" in r and "only back to 6" in r for r in over.reasons)
    memory = ScalingMemory(last_scale_up_at=0.0)
    up = dict(cooldown_up_seconds=300)
    under = decide(resource(1, min_units=3), [proposal("cpu", 8, **up)], memory, 60.0)
    assert under.status == DecisionStatus.PROPOSED and under.desired_units == 3
    # Out of cooldown, the rules' own size (inside the bounds) is taken at once.
    free = decide(resource(1, min_units=3), [proposal("cpu", 8, **up)], ScalingMemory(), 60.0)
    assert free.desired_units == 4  # max(2 x 1, 4): bounded, above the floor
    inside = decide(resource(6, max_units=6), [proposal("cpu", 5, **cool)], memory, 60.0)
    assert inside.status == DecisionStatus.SKIPPED_COOLDOWN  # inside the bounds: unchanged


def test_a_size_outside_the_bounds_returns_to_the_bound_without_any_reading():
    d = decide(resource(12, max_units=6), [], ScalingMemory(), 0.0)
    assert d.action == Action.SCALE_DOWN and d.desired_units == 6
    assert d.status == DecisionStatus.PROPOSED and d.recommendation == 6
    held = decide(resource(5, max_units=6), [], ScalingMemory(), 0.0)
    assert held.action == Action.NONE and held.desired_units == 5


def test_resource_validation():
    with pytest.raises(ValueError):
        resource(3, min_units=5, max_units=2)
    with pytest.raises(ValueError):
        resource(3, target_utilization=1.5)


# --- outcome -----------------------------------------------------------------------------


def test_outcome_success_only_inside_the_band():
    assert judge_outcome(np.array([0.58, 0.62, 0.9]), 0.6, 0.1).success is True
    above = judge_outcome(np.array([0.8, 0.85]), 0.6, 0.1)
    assert above.success is False and "above" in above.reason
    assert judge_outcome(np.array([0.2, 0.25]), 0.6, 0.1).success is False
    assert judge_outcome(np.array([]), 0.6, 0.1).success is None


# --- forecasting and headroom -------------------------------------------------------------


def daily_trace(days: int, noise: float, seed: int, base: float = 200.0, amp: float = 120.0):
    rng = np.random.default_rng(seed)
    ts = np.arange(days * 288) * STEP
    mean = base + amp * np.sin(2 * np.pi * ts / 86400.0)
    return ts, np.maximum(rng.poisson(mean) * 1.0 + rng.normal(0, noise, ts.size), 0.0)


def test_seasonal_forecaster_beats_last_value_a_few_steps_ahead():
    ts, load = daily_trace(5, noise=0.0, seed=0, base=200, amp=150)
    forecaster, h = SeasonalLevelForecaster(), 6
    errs_s, errs_n = [], []
    for t in range(3 * 288, 5 * 288 - h, 7):
        truth = load[t + h]
        errs_s.append(abs(forecaster(ts[: t + 1], load[: t + 1], h)[-1] - truth))
        errs_n.append(abs(last_value_forecaster(ts[: t + 1], load[: t + 1], h)[-1] - truth))
    assert np.mean(errs_s) < np.mean(errs_n)


def test_forecaster_on_constant_load_is_that_constant():
    ts = np.arange(1000) * STEP
    out = SeasonalLevelForecaster()(ts, np.full(1000, 42.0), 3)
    assert np.allclose(out, 42.0)


def test_error_scale_estimates_sigma_of_normal_errors():
    rng = np.random.default_rng(3)
    scale = ErrorScale(window=5000, refresh_every=1)
    for e in rng.normal(0, 7.0, 5000):
        scale.add(e)
    assert scale.scale() == pytest.approx(7.0, rel=0.08)


def test_error_scale_ignores_a_single_spike():
    scale = ErrorScale(window=288, refresh_every=1)
    for e in [1.0, -1.0] * 100:
        scale.add(e)
    before = scale.scale()
    scale.add(10_000.0)
    assert scale.scale() == pytest.approx(before, rel=0.05)


def test_headroom_budget_moves_against_overspending():
    over, under = HeadroomBudget(every_steps=1), HeadroomBudget(every_steps=1)
    z0 = over.z
    for _ in range(5):
        over.observe(12, 10)
        under.observe(7, 10)
    assert over.z < z0 < under.z


def test_headroom_budget_trusts_the_level_less_only_when_headroom_is_gone():
    budget = HeadroomBudget(every_steps=1, window_steps=10)
    for _ in range(40):  # persistent overspend, as on sparse spiky load
        budget.observe(20, 10)
    assert budget.z == budget.z_min and budget.level_factor < 1.0
    for _ in range(200):  # now underspending: the level factor recovers first
        budget.observe(5, 10)
    assert budget.level_factor == 1.0 and budget.z > budget.z_min


# --- replay ------------------------------------------------------------------------------


def test_replay_metrics_by_hand():
    m = replay_metrics(np.array([0.0, 15.0, 25.0]), np.array([1, 2, 2]), 10.0, STEP)
    assert m.overloaded_steps == 2  # 15 > 1x10 and 25 > 2x10
    assert m.unit_hours == pytest.approx((1 + 2) * STEP / 3600)
    assert m.changes == 1
    assert m.overloaded_minutes == pytest.approx(10.0)


def test_hpa_reference_doubles_on_a_jump_and_waits_to_scale_down():
    ts = np.arange(12) * STEP
    load = np.array([10.0] * 3 + [200.0] * 5 + [10.0] * 4)
    units = hpa_reference(ts, load, 10.0, 1, 100, 0.5)
    assert units[0] == 2  # ceil(10 / (10 x 0.5))
    assert list(units[3:6]) == [4, 8, 16]  # at most max(2 x current, 4) per step
    assert units[7] == 40 and units[-1] == 2


def test_simulate_is_causal():
    ts, load = daily_trace(3, noise=5.0, seed=1)
    cut = 500
    changed = load.copy()
    changed[cut + 1 :] *= 3.0
    a = simulate(ts, load, 20.0, 1, 1000, 0.7).units
    b = simulate(ts, changed, 20.0, 1, 1000, 0.7).units
    assert np.array_equal(a[: cut + 1], b[: cut + 1])
    assert not np.array_equal(a, b)


def test_simulate_on_constant_load_settles_without_overload_or_flapping():
    ts = np.arange(600) * STEP
    load = np.full(600, 100.0)
    units = simulate(ts, load, 10.0, 1, 100, 0.7).units
    m = replay_metrics(load, units, 10.0, STEP)
    assert m.overloaded_steps == 0
    assert np.all(units[50:] == units[50]) and units[50] >= 10


def test_engine_beats_hpa_on_noisy_daily_load():
    """Known answer: on Poisson load around a daily cycle, a smoothed forecast with
    risk-shaped headroom overloads less than HPA for no more unit-hours and fewer changes."""
    ts, load = daily_trace(4, noise=0.0, seed=7, base=60, amp=40)
    capacity = 8.0
    ours = replay_metrics(load, simulate(ts, load, capacity, 1, 1000, 0.7).units, capacity, STEP)
    hpa = replay_metrics(load, hpa_reference(ts, load, capacity, 1, 1000, 0.7), capacity, STEP)
    assert ours.overloaded_steps < hpa.overloaded_steps
    assert ours.unit_hours <= hpa.unit_hours * 1.02
    assert ours.changes < hpa.changes


def test_simulate_rejects_bad_input():
    ts = np.arange(5) * STEP
    with pytest.raises(ValueError, match="unit_capacity"):
        simulate(ts, np.ones(5), 0.0, 1, 10, 0.7)
    with pytest.raises(ValueError, match="increasing"):
        simulate(ts[::-1], np.ones(5), 1.0, 1, 10, 0.7)
    with pytest.raises(ValueError, match="min_units"):
        simulate(ts, np.ones(5), 1.0, 5, 2, 0.7)
    with pytest.raises(ValueError, match=">= 0"):
        simulate(ts, -np.ones(5), 1.0, 1, 10, 0.7)


# --- traces ------------------------------------------------------------------------------


def test_read_trace_csv_sorts_and_dedupes(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "timestamp,value\n2024-01-01 00:05:00,2\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,3\n"
    )
    ts, values = read_trace_csv(path)
    assert list(np.diff(ts)) == [300.0] and list(values) == [1.0, 2.0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("time,value\n1,2\n", "missing column"),
        ("timestamp,value\nnope,1\n2024-01-01,2\n", "line 2"),
        ("timestamp,value\n2024-01-01,-1\n2024-01-02,1\n", ">= 0"),
    ],
)
def test_read_trace_csv_explains_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TraceError, match=message):
        read_trace_csv(path)


def test_hours_per_month_is_an_average_month():
    assert HOURS_PER_MONTH == pytest.approx(365.25 * 24 / 12)
    assert math.isclose(HOURS_PER_MONTH * 12, 8766.0)


def test_load_on_no_capacity_is_judged_overloaded_not_skipped():
    # load / 0 units is +inf: dropped with the NaNs it made a zero-unit change "unknown".
    verdict = judge_outcome(np.array([np.inf, np.inf, np.nan]), 0.6, 0.25)
    assert verdict.success is False and "above" in verdict.reason


# --- spreading a total over workers ------------------------------------------------------


@pytest.mark.parametrize("requested", [0, 1, 2, 3, 4, 5, 7, 10, 31])
def test_a_spread_is_even_adds_up_and_keeps_every_member_running(requested):
    current = {"a": 1, "b": 6, "c": 2, "d": 2}
    spread = spread_units(requested, current)
    shares = list(spread.shares.values())
    assert set(spread.shares) == set(current)
    assert min(shares) >= MIN_PER_MEMBER and max(shares) - min(shares) <= 1
    assert spread.total == max(requested, len(current) * MIN_PER_MEMBER)
    assert spread.floored == (requested < len(current))


def test_a_spread_moves_the_fewest_processes():
    # 7 over 3: the extra unit stays where a process already runs beyond the base of 2.
    assert spread_units(7, {"a": 1, "b": 4, "c": 2}).shares == {"a": 2, "b": 3, "c": 2}
    assert spread_units(7, {"a": 4, "b": 1, "c": 2}).shares == {"a": 3, "b": 2, "c": 2}
    # Ties go by name, so the same sizes give the same split on every call.
    assert spread_units(5, {"y": 1, "x": 1}).shares == {"x": 3, "y": 2}


def test_a_spread_needs_members_and_a_non_negative_request():
    with pytest.raises(ValueError):
        spread_units(3, {})
    with pytest.raises(ValueError):
        spread_units(-1, {"a": 1})

"""Services against the database: decisions, cooldowns, emergencies, prediction, outcomes."""

from __future__ import annotations

import sys
import types
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from scaling import engine, selectors, services
from scaling.actuators import CeleryPoolActuator
from scaling.defaults import DEFAULT_RESOURCES, DEFAULT_RULES
from scaling.models import ScalableResource, ScalingDecision, ScalingRule
from scaling.readings import STALE_READING_SECONDS

from .factories import cpu_rule, resource, samples
from .test_actuators import Receiver, fake_celery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("postgres")]


def evaluate(res, *, execute=True, now=None):
    [ev] = services.decisions_evaluate(resource_ids=[res.pk], execute=execute, now=now)
    return ev


def test_default_resources_and_five_rules_exist_and_ensure_is_idempotent():
    assert ScalingRule.objects.count() == len(DEFAULT_RULES) == 5
    assert ScalableResource.objects.count() == len(DEFAULT_RESOURCES)
    metrics = set(ScalingRule.objects.values_list("metric", flat=True))
    assert {
        "system.cpu.utilization",
        "system.memory.utilization",
        "db.connections.active",
        "api.ratelimit.utilization",
        "celery.queue.backlog",
    } == metrics
    edited = ScalingRule.objects.get(name="CPU utilisation")
    edited.target = 0.42
    edited.save()
    assert services.scaling_defaults_ensure() == {"resources": 0, "rules": 0}
    edited.refresh_from_db()
    assert edited.target == 0.42  # an operator's edit survives
    ScalingRule.objects.filter(name="Memory utilisation").delete()
    assert services.scaling_defaults_ensure()["rules"] == 1


@pytest.mark.usefixtures("empty_telemetry")  # the session demo world has these series
def test_the_default_db_pool_rule_holds_a_steady_load_at_one_size():
    """The shipped rule tracked the share of the server's 100 connections, which does not
    fall as slices are added: at a steady 80 in use it grew the pool 10 -> 12 -> 14 -> 16
    one cooldown at a time. Sized by connections per slice it settles at ceil(80 / 7)."""
    pool = ScalableResource.objects.get(name="database-connections")
    start = timezone.now() - timedelta(minutes=45)  # samples from the future are refused
    sizes = []
    for i in range(4):
        now = start + timedelta(minutes=11 * i)
        samples("db.connections.active", [80.0] * 5, end=now)
        samples("db.connections.utilization", [0.8] * 5, end=now)
        evaluate(pool, now=now)
        pool.refresh_from_db()
        sizes.append(pool.current_units)
    assert sizes == [12, 12, 12, 12]


def test_the_migration_rewrites_the_old_db_rule_only_where_nobody_edited_it():
    import importlib

    from django.apps import apps

    from scaling.defaults import DB_RULE_BEFORE

    migration = importlib.import_module("scaling.migrations.0004_db_connections_rule_per_unit")
    rule = ScalingRule.objects.get(name="Database connections")
    ScalingRule.objects.filter(pk=rule.pk).update(**DB_RULE_BEFORE)
    migration.rewrite(apps, None)
    rule.refresh_from_db()
    assert (rule.metric, rule.kind, rule.target) == ("db.connections.active", "queue_backlog", 7.0)
    ScalingRule.objects.filter(pk=rule.pk).update(**{**DB_RULE_BEFORE, "target": 0.65})
    migration.rewrite(apps, None)
    rule.refresh_from_db()
    assert (rule.metric, rule.target) == ("db.connections.utilization", 0.65)  # edited: kept


def test_dry_run_writes_nothing_and_execute_scales_with_cost():
    res = resource()
    cpu_rule(res)
    samples("test.cpu", [0.9])
    ev = evaluate(res, execute=False)
    assert ev.decision.desired_units == 6  # 4 x 0.9 / 0.6
    assert ScalingDecision.objects.count() == 0
    ev = evaluate(res)
    row = ev.row
    assert row.status == ScalingDecision.Status.EXECUTED and row.action == "scale_up"
    assert row.cost_per_hour_delta == pytest.approx(2 * res.cost_per_unit_hour)
    assert row.outcome == ScalingDecision.Outcome.PENDING
    assert list(row.rules.values_list("name", flat=True)) == ["cpu"]
    res.refresh_from_db()
    assert res.current_units == 6


def test_cooldown_skips_then_emergency_overrides_it():
    res = resource(startup_seconds=0)  # readings after the change measure the new size
    cpu_rule(res)
    now = timezone.now()
    samples("test.cpu", [0.9], end=now)
    evaluate(res, now=now)
    res.refresh_from_db()
    samples("test.cpu", [0.85], end=now + timedelta(seconds=30))
    skipped = evaluate(res, now=now + timedelta(seconds=60)).row
    assert skipped.status == ScalingDecision.Status.SKIPPED_COOLDOWN
    res.refresh_from_db()
    assert res.current_units == 6
    samples("test.cpu", [0.97], end=now + timedelta(seconds=50))
    urgent = evaluate(res, now=now + timedelta(seconds=70)).row
    assert urgent.emergency and urgent.status == ScalingDecision.Status.EXECUTED
    assert urgent.desired_units == 12  # maximum step: max(2 x 6, 4)
    assert any("emergency" in r for r in urgent.reasons)


def test_one_reading_drives_one_change_however_often_it_is_evaluated():
    # Metrics every 5 minutes, evaluations every minute: the same reading is seen again
    # after the change it caused, and must not resize the new size once more.
    res = resource()
    cpu_rule(res)
    t0 = timezone.now() - timedelta(minutes=30)
    samples("test.cpu", [0.9], end=t0)
    rows = [evaluate(res, now=t0 + timedelta(seconds=10 + 60 * k)).row for k in range(5)]
    assert [r.status for r in rows].count(ScalingDecision.Status.EXECUTED) == 1
    res.refresh_from_db()
    assert res.current_units == 6  # ceil(4 x 0.9 / 0.6), once
    assert rows[-1].inputs["readings"][0]["measured_units"] == 4
    # A reading taken once the new units serve (startup_seconds later) measures 6 units.
    samples("test.cpu", [0.9], end=t0 + timedelta(seconds=10 + res.startup_seconds + 5))
    later = evaluate(res, now=t0 + timedelta(seconds=400)).row
    assert later.status == ScalingDecision.Status.EXECUTED and later.desired_units == 9


def test_one_critical_reading_is_one_emergency_not_a_doubling_every_minute():
    res = resource()
    cpu_rule(res)
    t0 = timezone.now() - timedelta(minutes=30)
    samples("test.cpu", [0.97], end=t0)
    rows = [evaluate(res, now=t0 + timedelta(seconds=10 + 60 * k)).row for k in range(4)]
    assert [r.emergency for r in rows] == [True, False, False, False]
    res.refresh_from_db()
    assert res.current_units == 8  # max(2 x 4, 4), once; 32 before


def test_scale_down_waits_for_the_stabilisation_window():
    res = resource(current_units=10)
    cpu_rule(res, cooldown_down_seconds=0)
    now = timezone.now() - timedelta(minutes=20)
    samples("test.cpu", [0.6], end=now)
    evaluate(res, now=now)  # recommendation 10 remembered
    samples("test.cpu", [0.2], end=now + timedelta(seconds=60))
    held = evaluate(res, now=now + timedelta(seconds=120)).row
    assert held.action == "none" and held.desired_units == 10
    later = evaluate(res, now=now + timedelta(seconds=500)).row
    assert later.action == "scale_down" and later.status == ScalingDecision.Status.EXECUTED


def test_failed_actuator_leaves_capacity_unchanged_and_says_why():
    res = resource(actuator="webhook", actuator_config={})
    cpu_rule(res)
    samples("test.cpu", [0.9])
    row = evaluate(res).row
    assert row.status == ScalingDecision.Status.FAILED and "url" in row.actuator_detail
    res.refresh_from_db()
    assert res.current_units == 4


def test_prediction_adds_capacity_ahead_of_load_but_never_removes_it():
    res = resource(
        current_units=4,
        load_series_name="test.load",
        predictive_enabled=True,
        target_utilization=0.5,
        startup_seconds=300,
    )
    samples("test.load", [1000.0] * 600, step=300)  # two days flat at 1000/min
    ev = evaluate(res, execute=False)
    forecast = next(p for p in ev.decision.proposals if p.predictive)
    assert forecast.desired_units == 20  # 1000 / (100 x 0.5)
    assert ev.decision.predictive and ev.decision.desired_units == 8  # bounded: max(2x4, 4)
    cpu_rule(res)
    samples("test.cpu", [2.7])  # reactive asks for ceil(4 x 2.7 / 0.6) = 18
    samples("test.load", [100.0] * 20, step=300)
    ev = evaluate(res, execute=False)
    assert not ev.decision.predictive  # the rule's larger demand wins over the forecast


def test_a_forecast_does_not_shrink_a_resource_whose_rules_all_abstain():
    res = resource(
        current_units=20,
        load_series_name="test.load",
        predictive_enabled=True,
        stabilization_window_seconds=0,
    )
    cpu_rule(res)
    now = timezone.now()
    samples("test.cpu", [0.9], end=now - timedelta(seconds=STALE_READING_SECONDS + 60))
    samples("test.load", [100.0] * 50, end=now, step=300)  # the forecast asks for 2 units
    ev = evaluate(res, now=now)
    forecast = next(p for p in ev.decision.proposals if p.predictive)
    assert forecast.desired_units < res.current_units
    assert ev.decision.action == "none" and ev.row.desired_units == res.current_units
    res.refresh_from_db()
    assert res.current_units == 20


def test_no_built_in_forecast_from_a_load_series_that_stopped_reporting():
    res = resource(current_units=4, load_series_name="test.load", predictive_enabled=True)
    now = timezone.now()
    stale_end = now - timedelta(seconds=STALE_READING_SECONDS + 60)
    samples("test.load", [1000.0] * 50, end=stale_end, step=300)
    ev = evaluate(res, execute=False, now=now)
    assert not any(p.predictive for p in ev.decision.proposals)
    assert "forecast_skipped" in ev.inputs
    fresh = evaluate(res, execute=False, now=stale_end)
    assert any(p.predictive for p in fresh.decision.proposals)


def test_a_resource_that_cannot_be_evaluated_is_recorded_and_the_run_goes_on(monkeypatch):
    broken, fine = resource(name="a-broken"), resource(name="b-fine")
    cpu_rule(broken)
    cpu_rule(fine)
    samples("test.cpu", [0.9])
    evaluate_resource = services.resource_evaluate

    def flaky(res, **kw):
        if res.pk == broken.pk:
            raise ZeroDivisionError("telemetry went away")
        return evaluate_resource(res, **kw)

    monkeypatch.setattr(services, "resource_evaluate", flaky)
    evaluations = services.decisions_evaluate(resource_ids=[broken.pk, fine.pk], execute=True)
    rows = {ev.resource.name: ev.row for ev in evaluations}
    assert rows["a-broken"].status == ScalingDecision.Status.FAILED
    assert (
        rows["a-broken"].action == "none" and "telemetry went away" in rows["a-broken"].reasons[0]
    )
    assert rows["b-fine"].status == ScalingDecision.Status.EXECUTED


def test_a_failing_actuator_is_retried_with_a_growing_backoff_not_every_tick():
    res = resource(actuator="webhook", actuator_config={"url": ""})  # fails every call
    cpu_rule(res, cooldown_up_seconds=0)
    start = timezone.now() - timedelta(hours=1)  # ticks in the past, before the edit below
    ScalableResource.objects.filter(pk=res.pk).update(updated_at=start)  # created back then
    samples("test.cpu", [0.9], end=start)

    def tick(after: timedelta) -> ScalingDecision:
        return evaluate(res, now=start + after).row

    first = tick(timedelta(minutes=1))
    assert first.status == ScalingDecision.Status.FAILED
    backoff = timedelta(seconds=engine.failure_backoff_seconds(1))
    held = tick(timedelta(minutes=2))
    assert held.status == ScalingDecision.Status.SKIPPED_COOLDOWN
    assert "backing off" in held.reasons[-1]
    again = tick(timedelta(minutes=1) + backoff)  # the backoff is over: one more call
    assert again.status == ScalingDecision.Status.FAILED
    longer = timedelta(seconds=engine.failure_backoff_seconds(2))
    assert longer > backoff
    assert tick(timedelta(minutes=1) + backoff + longer / 2).status == "skipped_cooldown"
    # the operator fixes the config: the next evaluation tries at once
    services.resource_update(resource_id=res.pk, data={"actuator": "dry_run"})
    assert tick(timedelta(minutes=1) + backoff + longer / 2).status == "executed"


def test_outcomes_are_judged_after_settle_and_feed_the_success_rate():
    res = resource(load_series_name="test.load", settle_seconds=300)
    cpu_rule(res, cooldown_up_seconds=0)
    start = timezone.now() - timedelta(hours=3)
    samples("test.cpu", [0.9], end=start)
    good = evaluate(res, now=start).row  # 6 units x 100 = 600 per minute of capacity
    samples("test.load", [360.0] * 20, end=start + timedelta(minutes=20), step=60)  # 60%
    waiting = services.outcomes_check(now=start + timedelta(minutes=8))
    assert waiting["waiting"] == 1 and waiting["judged"] == 0  # settle time not over
    counts = services.outcomes_check(now=start + timedelta(hours=1))
    good.refresh_from_db()
    assert counts["success"] == 1 and good.outcome == "success"
    assert good.outcome_utilization == pytest.approx(0.6)
    assert selectors.success_rate()["rate"] == 1.0

    later = start + timedelta(hours=1)
    samples("test.cpu", [1.2], end=later)  # 6 x 1.2 / 0.6 -> 12 units, 1200 capacity
    bad = evaluate(res, now=later).row
    samples("test.load", [1150.0] * 20, end=later + timedelta(minutes=20), step=60)  # 96%
    services.outcomes_check(now=later + timedelta(hours=1))
    bad.refresh_from_db()
    assert bad.outcome == "failure" and "above" in bad.outcome_reason
    rate = selectors.success_rate()
    assert (rate["judged"], rate["success"]) == (2, 1) and rate["rate"] == 0.5


def executed_change(res, *, at, current, desired) -> ScalingDecision:
    """A stored change as the job records it, waiting for its outcome."""
    return ScalingDecision.objects.create(
        resource=res, at=at, current_units=current, desired_units=desired,
        recommendation=desired, action="scale_up" if desired > current else "scale_down",
        status="executed", actuator="dry_run", executed_at=at, outcome="pending",
    )  # fmt: skip


def test_without_a_load_series_an_outcome_is_judged_against_the_rules_target():
    res = resource(target_utilization=0.9, outcome_tolerance=0.1)
    rule = cpu_rule(res, target=0.5)  # the operator steers CPU to 0.5, not to 0.9
    now = timezone.now()
    row = executed_change(res, at=now - timedelta(minutes=30), current=2, desired=4)
    row.rules.set([rule])
    samples("test.cpu", [rule.target] * 20, end=now - timedelta(minutes=2))
    services.outcomes_check(now=now)
    row.refresh_from_db()
    assert row.outcome == "success", row.outcome_reason
    assert row.outcome_utilization == pytest.approx(rule.target)


def test_a_change_superseded_before_its_window_ended_is_not_judged():
    res = resource(current_units=16, load_series_name="test.load", settle_seconds=300)
    now = timezone.now()
    at = now - timedelta(minutes=30)
    first = executed_change(res, at=at, current=4, desired=8)
    second = executed_change(res, at=at + timedelta(minutes=2), current=8, desired=16)
    load = res.target_utilization * second.desired_units * res.unit_capacity  # in band on 16
    samples("test.load", [load] * 30, end=now - timedelta(minutes=1))
    services.outcomes_check(now=now)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.outcome == "unknown" and f"#{second.pk}" in first.outcome_reason
    assert first.outcome_utilization is None
    assert second.outcome == "success"


@pytest.fixture
def kubernetes_scale(monkeypatch):
    """The official client mocked at ``AppsV1Api``: the scale subresource answers with the
    replicas in ``answer["replicas"]`` (a policy or an admission webhook may change them)."""
    answer = {"replicas": None}
    apps = mock.Mock()
    apps.patch_namespaced_deployment_scale.side_effect = lambda **kw: types.SimpleNamespace(
        spec=types.SimpleNamespace(replicas=answer["replicas"])
    )
    fake = types.ModuleType("kubernetes")
    fake.client = types.SimpleNamespace(AppsV1Api=mock.Mock(return_value=apps))
    fake.config = types.SimpleNamespace(
        load_incluster_config=mock.Mock(), load_kube_config=mock.Mock()
    )
    monkeypatch.setitem(sys.modules, "kubernetes", fake)
    return answer


def scale_up_and_judge(res, *, load_per_unit: float = 0.0, load: float | None = None):
    """Scale ``res`` up from a CPU spike three hours ago, feed a load of ``load_per_unit``
    per unit *actually running* afterwards (or ``load``), judge it; returns the decision
    and the resource."""
    cpu_rule(res, cooldown_up_seconds=0)
    start = timezone.now() - timedelta(hours=3)
    samples("test.cpu", [0.9], end=start)  # 4 x 0.9 / 0.6 -> 6 requested
    row = evaluate(res, now=start).row
    res.refresh_from_db()
    load = load_per_unit * res.current_units if load is None else load
    samples("test.load", [load] * 20, end=start + timedelta(minutes=20), step=60)
    services.outcomes_check(now=start + timedelta(hours=1))
    row.refresh_from_db()
    return row, res


def test_a_kubernetes_change_is_judged_on_the_replicas_it_set_not_the_request(kubernetes_scale):
    # The request was 6; the cluster set 5. Load at the target on 5 replicas is on target:
    # judged on 6 it read as 0.5 (below a 0.54-0.66 band) and failed a change that worked.
    kubernetes_scale["replicas"] = 5
    res = resource(load_series_name="test.load", outcome_tolerance=0.1,
                   actuator="kubernetes", actuator_config={"deployment": "web"})  # fmt: skip
    target = res.target_utilization * res.unit_capacity
    row, res = scale_up_and_judge(res, load_per_unit=target)
    assert row.status == "executed" and row.desired_units == 6
    assert row.outcome == "success", row.outcome_reason
    assert row.outcome_utilization == pytest.approx(res.target_utilization)
    assert res.current_units == row.applied_units == 5


def test_a_size_the_cluster_set_outside_the_bounds_is_recorded_as_it_is(kubernetes_scale):
    # max_units was lowered to 5 after deciding, or a policy holds 12: either way the resource
    # runs 12, and writing the clamped 5 would make the next evaluation start from a lie.
    kubernetes_scale["replicas"] = 12
    res = resource(max_units=6, load_series_name="test.load", actuator="kubernetes",
                   actuator_config={"deployment": "web"})  # fmt: skip
    row, res = scale_up_and_judge(res, load_per_unit=res.target_utilization * res.unit_capacity)
    assert res.current_units == 12
    assert row.outcome_utilization == pytest.approx(res.target_utilization)
    assert row.applied_units == 12


def test_a_celery_resources_size_is_the_total_of_its_workers_pools(monkeypatch):
    # 4 units over three workers; the rules ask 6. Per worker, every pool grew to 6: 18
    # processes ran while the resource said 6, and its cost and outcome were off threefold.
    sizes = {"a@h": 1, "b@h": 1, "c@h": 2}
    app = fake_celery(sizes)
    monkeypatch.setattr(CeleryPoolActuator, "_app", lambda self: app)
    res = resource(load_series_name="test.load", outcome_tolerance=0.1, actuator="celery")
    row, res = scale_up_and_judge(res, load_per_unit=res.target_utilization * res.unit_capacity)
    assert sizes == {"a@h": 2, "b@h": 2, "c@h": 2}
    assert res.current_units == row.applied_units == sum(sizes.values()) == 6
    assert row.outcome == "success", row.outcome_reason


def test_fewer_celery_units_than_workers_records_what_runs(monkeypatch):
    sizes = {"a@h": 2, "b@h": 2, "c@h": 2}
    monkeypatch.setattr(CeleryPoolActuator, "_app", lambda self: fake_celery(sizes))
    res = resource(current_units=6, actuator="celery", startup_seconds=0)
    cpu_rule(res, cooldown_down_seconds=0)
    samples("test.cpu", [0.1])  # 6 x 0.1 / 0.6 -> 1 unit
    row = evaluate(res).row
    res.refresh_from_db()
    assert row.status == "executed" and row.desired_units == 1
    assert sizes == {"a@h": 1, "b@h": 1, "c@h": 1}
    assert res.current_units == row.applied_units == 3
    assert "warning: celery: 1 unit(s) requested over 3 worker(s)" in row.actuator_detail


def test_a_size_reported_outside_the_bounds_is_said_and_undone_by_the_next_evaluation(
    kubernetes_scale,
):
    # The cluster ran 12 where max_units is 6. The next evaluation came inside the rule's
    # scale-down cooldown, so it was skipped and 12 ran (and cost) until the cooldown ended.
    kubernetes_scale["replicas"] = 12
    res = resource(max_units=6, startup_seconds=0, actuator="kubernetes",
                   actuator_config={"deployment": "web"})  # fmt: skip
    cpu_rule(res, cooldown_down_seconds=300)
    start = timezone.now() - timedelta(minutes=10)  # samples from the future are refused
    samples("test.cpu", [0.9], end=start)  # 4 x 0.9 / 0.6 -> 6
    first = evaluate(res, now=start).row
    res.refresh_from_db()
    assert res.current_units == first.applied_units == 12
    assert "warning: current size 12 is above max_units 6" in first.actuator_detail
    [status] = [r for r in selectors.status_summary()["resources"] if r["id"] == res.pk]
    assert "above max_units 6" in status["bounds_condition"]
    kubernetes_scale["replicas"] = 6
    samples("test.cpu", [0.5], end=start + timedelta(seconds=30))  # 12 x 0.5 / 0.6 -> 10
    second = evaluate(res, now=start + timedelta(seconds=60)).row
    assert second.status == "executed" and second.action == "scale_down"
    assert second.desired_units == 6 and any("cooldowns waived" in r for r in second.reasons)
    res.refresh_from_db()
    assert res.current_units == 6 and res.bounds_condition is None
    [status] = [r for r in selectors.status_summary()["resources"] if r["id"] == res.pk]
    assert status["bounds_condition"] is None


def test_a_request_applied_after_the_bounds_moved_is_recorded_as_sent_then_brought_back(
    kubernetes_scale,
):
    # The operator lowered max_units to 6 while a decision for 8 was on its way: the cluster
    # was asked for 8 and said nothing, so 8 runs. Recorded clamped (6), nothing undid the 8.
    res = resource(actuator="kubernetes", actuator_config={"deployment": "web"})
    row = ScalingDecision.objects.create(resource=res, at=timezone.now(), current_units=4,
                                         desired_units=8, recommendation=8, action="scale_up",
                                         status="proposed")  # fmt: skip
    ScalableResource.objects.filter(pk=res.pk).update(max_units=6)
    done = services.decision_execute(decision_id=row.pk)
    res.refresh_from_db()
    assert done.status == "executed" and done.applied_units is None
    assert res.current_units == 8
    assert "above max_units 6 (the size requested)" in done.actuator_detail
    back = evaluate(res).row  # no rule at all: the bounds alone move it
    assert (back.status, back.action, back.desired_units) == ("executed", "scale_down", 6)
    res.refresh_from_db()
    assert res.current_units == 6


def test_a_target_that_insists_outside_the_bounds_is_not_asked_again_every_evaluation(
    monkeypatch,
):
    # Three workers keep one process each, so a max_units of 2 can never run: every
    # evaluation (every minute) sent the bound, recorded an executed scale-down 3 -> 2 with
    # its saving and a warning, and the target answered 3 again.
    sizes = {"a@h": 1, "b@h": 1, "c@h": 1}
    app = fake_celery(sizes)
    monkeypatch.setattr(CeleryPoolActuator, "_app", lambda self: app)
    res = resource(current_units=3, max_units=2, actuator="celery")
    start = timezone.now() - timedelta(minutes=30)
    first = evaluate(res, now=start).row
    assert (first.status, first.desired_units, first.applied_units) == ("executed", 2, 3)
    asked = app.control.inspect.call_count

    again = evaluate(res, now=start + timedelta(seconds=60)).row
    assert again.status == "skipped_cooldown" and again.cost_per_hour_delta == 0
    assert any(f"answered 3 when asked for 2 (decision #{first.pk}," in r for r in again.reasons)
    assert app.control.inspect.call_count == asked  # the target was not asked again
    # asked again once the backoff is over (300 s, then doubling), as after failures
    later = evaluate(res, now=start + timedelta(seconds=301)).row
    assert (later.status, later.applied_units) == ("executed", 3)
    held = evaluate(res, now=start + timedelta(seconds=301 + 310)).row
    assert held.status == "skipped_cooldown" and "600s" in held.reasons[-1]
    # a new bound is a new request: asked at once
    ScalableResource.objects.filter(pk=res.pk).update(max_units=1)
    res.refresh_from_db()
    moved = evaluate(res, now=start + timedelta(seconds=301 + 320)).row
    assert (moved.status, moved.desired_units) == ("executed", 1)


def test_a_kubernetes_answer_without_replicas_keeps_the_requested_size(kubernetes_scale):
    res = resource(load_series_name="test.load", actuator="kubernetes",
                   actuator_config={"deployment": "web"})  # fmt: skip
    row, res = scale_up_and_judge(res, load_per_unit=res.target_utilization * res.unit_capacity)
    assert row.applied_units is None and res.current_units == row.desired_units == 6
    assert row.outcome == "success"


@pytest.fixture
def webhook_secret(monkeypatch):
    monkeypatch.setenv("SCALING_WEBHOOK_SECRET", "s3cret")


def webhook_resource(receiver):
    return resource(load_series_name="test.load", outcome_tolerance=0.1, actuator="webhook",
                    actuator_config={"url": receiver.url, "retries": 0})  # fmt: skip


def test_a_webhook_receivers_units_become_the_size_and_the_outcome_is_judged_on_them(
    webhook_secret,
):
    receiver = Receiver([(200, 0.0, {"Content-Type": "application/json"}, b'{"units": 8}')])
    try:
        res = webhook_resource(receiver)
        on_target_on_8 = 8 * res.target_utilization * res.unit_capacity
        row, res = scale_up_and_judge(res, load=on_target_on_8)
    finally:
        receiver.close()
    [(_, body)] = receiver.seen
    assert b'"desired_units":6' in body
    assert row.outcome == "success", row.outcome_reason  # on 6 it read 0.8: a failure
    assert res.current_units == row.applied_units == 8
    assert "units=8" in row.actuator_detail


@pytest.mark.parametrize("units", [b'"8"', b"-2", b"7.5", b"true"])
def test_a_webhook_answer_with_a_bad_units_is_ignored_with_a_warning_on_the_decision(
    webhook_secret, units
):
    answer = b'{"units": ' + units + b"}"
    receiver = Receiver([(200, 0.0, {"Content-Type": "application/json"}, answer)])
    try:
        res = webhook_resource(receiver)
        row, res = scale_up_and_judge(res, load_per_unit=res.target_utilization * res.unit_capacity)
    finally:
        receiver.close()
    assert row.status == "executed"
    assert row.applied_units is None and res.current_units == row.desired_units == 6
    assert "warning: webhook answer ignored" in row.actuator_detail
    assert row.outcome == "success"


def test_a_decision_whose_reported_size_is_zero_fails_when_load_remains(kubernetes_scale):
    kubernetes_scale["replicas"] = 0
    res = resource(load_series_name="test.load", actuator="kubernetes",
                   actuator_config={"deployment": "web"})  # fmt: skip
    row, res = scale_up_and_judge(res, load=100.0)
    assert res.current_units == 0
    assert row.outcome == "failure" and "above" in row.outcome_reason
    assert row.applied_units == 0


def test_queue_backlog_reads_the_redis_broker_including_priority_lists(redis_url, settings):
    import redis

    from scaling.broker import queue_list_names

    settings.CELERY_BROKER_URL = redis_url
    queue = "scaling-test-backlog"
    client = redis.Redis.from_url(redis_url)
    names = queue_list_names(queue)
    client.delete(*names)
    try:
        client.rpush(names[0], *["x"] * 30)
        client.rpush(names[2], *["y"] * 12)  # a priority sub-list
        res = resource(name="workers", current_units=1, unit_capacity=1.0)
        ScalingRule.objects.create(resource=res, name="backlog", metric="celery.queue.backlog",
                                   queue=queue, kind="queue_backlog", target=10.0)  # fmt: skip
        ev = evaluate(res, execute=False)
        reading = ev.inputs["readings"][0]
        assert reading["source"] == "broker" and reading["value"] == 42
        assert ev.decision.desired_units == 4  # bounded from 5 by max(2 x 1, 4)
    finally:
        client.delete(*names)


def test_prune_drops_only_old_no_change_rows():
    res = resource()
    old = timezone.now() - timedelta(days=30)
    for action in ("none", "scale_up"):
        ScalingDecision.objects.create(resource=res, at=old, current_units=4, desired_units=4,
                                       recommendation=4, action=action, status="executed")  # fmt: skip
    assert services.decisions_prune(days=14) == {"deleted": 1}
    assert ScalingDecision.objects.get().action == "scale_up"


def test_overview_section_counts_change_with_data():
    before = selectors.overview_section()
    res = resource()
    cpu_rule(res)
    samples("test.cpu", [0.9])
    evaluate(res)
    after = selectors.overview_section()
    assert after["active_rules"] == before["active_rules"] + 1
    assert after["decisions_24h"]["executed"] == before["decisions_24h"]["executed"] + 1

"""Races between the scaling job, the operator (admin, API) and overlapping evaluations."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django import forms
from django.urls import reverse
from django.utils import timezone

from scaling import services
from scaling.actuators import ActuationRequest, ActuationResult
from scaling.api import ScalableResourceSerializer
from scaling.models import ScalableResource, ScalingDecision
from tests.locking import OtherConnection

from .factories import cpu_rule, resource, samples

API = "/admin/api/phase3/scaling"


class RecordingActuator:
    """Applies the desired size and records each call; ``during`` runs inside the call."""

    def __init__(self, during: Callable[[ActuationRequest], None] | None = None) -> None:
        self.calls: list[ActuationRequest] = []
        self.during = during

    def apply(self, request: ActuationRequest) -> ActuationResult:
        self.calls.append(request)
        if self.during is not None and len(self.calls) == 1:
            self.during(request)
        return ActuationResult(request.desired_units, "recorded")


@pytest.fixture
def actuator(monkeypatch) -> RecordingActuator:
    fake = RecordingActuator()
    monkeypatch.setattr(services, "actuator_for", lambda kind: fake)
    return fake


def job_scales_to(res: ScalableResource, units: int) -> None:
    """What ``decision_execute`` commits after a real scaling action."""
    ScalableResource.objects.filter(pk=res.pk).update(current_units=units)


def form_data(form: forms.BaseForm) -> dict[str, str]:
    """The POST body a browser sends for an unchanged ``form``."""
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[form.add_prefix(name)] = "on"  # unchecked boxes are not sent
            continue
        if not isinstance(field, forms.JSONField):  # its value() is the widget's text already
            value = field.prepare_value(value)
        data[form.add_prefix(name)] = "" if value is None else str(value)
    return data


# --- 1. current_units belongs to the job --------------------------------------------------


@pytest.mark.django_db
def test_admin_edit_does_not_put_back_a_stale_current_units(admin_client, monkeypatch):
    res = resource()
    url = reverse("admin:scaling_scalableresource_change", args=[res.pk])
    page = admin_client.get(url)  # the operator opens the form at 4 units
    form = page.context["adminform"].form
    assert "current_units" not in form.fields  # read-only once the resource exists
    add = admin_client.get(reverse("admin:scaling_scalableresource_add"))
    assert "current_units" in add.context["adminform"].form.fields  # set by hand on creation
    data = {**form_data(form), "current_units": "4", "max_units": "30"}
    for inline in page.context["inline_admin_formsets"]:
        data.update(form_data(inline.formset.management_form))
    job_scales_to(res, 5)  # while the form is open
    clean = ScalableResource.clean

    def clean_while_the_job_scales(self: ScalableResource) -> None:
        job_scales_to(res, 6)  # and again while the save request runs
        clean(self)

    monkeypatch.setattr(ScalableResource, "clean", clean_while_the_job_scales)
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    res.refresh_from_db()
    assert (res.max_units, res.current_units) == (30, 6)


@pytest.mark.django_db
def test_api_update_does_not_put_back_a_stale_current_units(client_with_role, monkeypatch):
    res = resource()
    body = client_with_role("viewer").get(f"{API}/resources/{res.pk}").json()  # 4 units
    job_scales_to(res, 5)
    serializer = ScalableResourceSerializer(res, data={"current_units": 4}, partial=True)
    assert serializer.is_valid() and "current_units" not in serializer.validated_data
    validate = ScalableResourceSerializer.validate

    def validate_while_the_job_scales(self: ScalableResourceSerializer, attrs: dict) -> dict:
        job_scales_to(res, 6)  # the job commits between loading the row and saving it
        return validate(self, attrs)

    monkeypatch.setattr(ScalableResourceSerializer, "validate", validate_while_the_job_scales)
    admin = client_with_role("admin")
    response = admin.put(f"{API}/resources/{res.pk}", {**body, "max_units": 30}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["max_units"], response.json()["current_units"]) == (30, 6)
    res.refresh_from_db()
    assert (res.max_units, res.current_units) == (30, 6)
    monkeypatch.undo()
    created = admin.post(f"{API}/resources", {"name": "pool", "unit_capacity": 1.0,
                                              "current_units": 3}, format="json")  # fmt: skip
    assert created.status_code == 201 and created.json()["current_units"] == 3


# --- 2. one scaling action per decision ---------------------------------------------------


@pytest.mark.django_db
def test_a_proposed_decision_claimed_by_one_run_is_not_executed_by_another(actuator):
    res = resource()
    row = ScalingDecision.objects.create(resource=res, at=timezone.now(), current_units=4,
                                         desired_units=6, recommendation=6, action="scale_up",
                                         status="proposed")  # fmt: skip
    seen = []
    # the admin's "execute proposed" arrives while the job's call to the actuator runs
    actuator.during = lambda request: seen.append(services.decision_execute(decision_id=row.pk))
    done = services.decision_execute(decision_id=row.pk)
    assert len(actuator.calls) == 1
    assert seen[0].status == ScalingDecision.Status.EXECUTING
    assert done.status == ScalingDecision.Status.EXECUTED
    res.refresh_from_db()
    assert res.current_units == 6


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("age", "size_now", "why"),
    [
        (timedelta(days=2), 20, "ago"),  # decided long ago
        (timedelta(seconds=10), 6, "units now"),  # recent, but the resource moved since
    ],
)
def test_an_out_of_date_proposed_decision_is_refused_not_applied(actuator, age, size_now, why):
    res = resource(current_units=size_now)
    row = ScalingDecision.objects.create(resource=res, at=timezone.now() - age, current_units=4,
                                         desired_units=8, recommendation=8, action="scale_up",
                                         status="proposed")  # fmt: skip
    done = services.decision_execute(decision_id=row.pk)
    assert done.status == ScalingDecision.Status.FAILED and not actuator.calls
    assert done.actuator_detail.startswith(services.STALE_REFUSAL) and why in done.actuator_detail
    res.refresh_from_db()
    assert res.current_units == size_now


@pytest.mark.django_db(transaction=True)
def test_overlapping_evaluations_scale_up_once(postgres, monkeypatch):
    res = resource()
    cpu_rule(res)
    samples("test.cpu", [0.9])  # 4 units -> 6
    ScalableResource.objects.exclude(pk=res.pk).update(enabled=False)  # the tick sees only res
    acting, release = threading.Event(), threading.Event()
    calls: list[ActuationRequest] = []

    class SlowActuator:
        def apply(self, request: ActuationRequest) -> ActuationResult:
            calls.append(request)
            if len(calls) == 1:
                acting.set()
                release.wait(10)
            return ActuationResult(request.desired_units, "recorded")

    monkeypatch.setattr(services, "actuator_for", lambda kind: SlowActuator())
    tick = OtherConnection(lambda: services.decisions_evaluate(execute=True))
    tick.start()
    try:
        assert acting.wait(10)
        # the admin action / POST /scaling/evaluate / an anomalies task, meanwhile
        [second] = services.decisions_evaluate(resource_ids=[res.pk], execute=True)
    finally:
        release.set()
        tick.join()
    assert not [e for e in tick.outcome if isinstance(e, BaseException)], tick.outcome
    assert [(c.current_units, c.desired_units) for c in calls] == [(4, 6)]
    assert second.row.status == ScalingDecision.Status.SKIPPED_COOLDOWN
    assert "still executing" in second.row.reasons[-1]
    assert second.row.cost_per_hour_delta == 0.0
    res.refresh_from_db()
    assert res.current_units == 6


@pytest.mark.django_db
def test_a_run_that_reached_the_lock_last_sees_the_change_executed_meanwhile(actuator):
    res = resource()
    cpu_rule(res, cooldown_up_seconds=300)
    started = timezone.now()
    samples("test.cpu", [0.9], end=started - timedelta(seconds=5))  # 4 units -> 6
    # The run that started later got the resource's lock first and scaled it...
    [first] = services.decisions_evaluate(
        resource_ids=[res.pk], execute=True, now=started + timedelta(seconds=20)
    )
    assert first.row.status == ScalingDecision.Status.EXECUTED
    # ...then the run that took its time earlier reaches the resource: the reading was
    # answered by that change (it measured 4 units), and the cooldown holds anyway.
    [second] = services.decisions_evaluate(resource_ids=[res.pk], execute=True, now=started)
    assert second.row.action == ScalingDecision.Action.NONE or (
        second.row.status == ScalingDecision.Status.SKIPPED_COOLDOWN
    ), second.row.reasons
    assert len(actuator.calls) == 1
    res.refresh_from_db()
    assert res.current_units == first.row.desired_units


@pytest.mark.django_db
def test_a_change_left_in_flight_by_a_dead_run_stops_holding_after_a_while(actuator):
    res = resource()
    cpu_rule(res)
    samples("test.cpu", [0.9])
    now = timezone.now()
    ScalingDecision.objects.create(
        resource=res, at=now - timedelta(seconds=services.IN_FLIGHT_SECONDS + 1),
        current_units=4, desired_units=6, recommendation=6, action="scale_up",
        status="executing",
    )  # fmt: skip
    [ev] = services.decisions_evaluate(resource_ids=[res.pk], execute=True, now=now)
    assert ev.row.status == ScalingDecision.Status.EXECUTED and len(actuator.calls) == 1
    # The dead run's claim no longer reads as under way: whether it acted is unknown.
    stale = res.decisions.exclude(pk=ev.row.pk).get()
    assert stale.status == ScalingDecision.Status.FAILED
    assert stale.actuator_detail.startswith("abandoned")


# --- 3. a disabled resource is left alone -------------------------------------------------


@pytest.mark.django_db
def test_a_resource_disabled_during_the_run_is_not_scaled(actuator):
    first, second = resource(name="a-web"), resource(name="b-web")
    cpu_rule(first)
    cpu_rule(second)
    samples("test.cpu", [0.9])
    # the operator disables b-web while the job is still busy with a-web
    actuator.during = lambda request: ScalableResource.objects.filter(pk=second.pk).update(
        enabled=False
    )
    evaluations = services.decisions_evaluate(resource_ids=[first.pk, second.pk], execute=True)
    assert [ev.resource.name for ev in evaluations] == ["a-web"]
    assert [c.resource for c in actuator.calls] == ["a-web"]
    second.refresh_from_db()
    assert second.current_units == 4 and not second.decisions.exists()

"""API: roles, validation (400 naming the field), status, dry-run vs executing evaluate."""

from __future__ import annotations

import pytest

from scaling import services
from scaling.models import ScalableResource, ScalingDecision, ScalingRule
from tests.choices import assert_names_valid_choices

from .factories import cpu_rule, resource, samples

pytestmark = pytest.mark.django_db
API = "/admin/api/phase3/scaling"


@pytest.fixture
def hot_resource():
    res = resource()
    cpu_rule(res)
    samples("test.cpu", [0.9])
    return res


def test_status_lists_resources_and_a_computed_success_rate(client_with_role, hot_resource):
    response = client_with_role("viewer").get(f"{API}/status")
    assert response.status_code == 200, response.content
    body = response.json()
    names = [r["name"] for r in body["resources"]]
    assert "test-web" in names
    mine = next(r for r in body["resources"] if r["name"] == "test-web")
    assert mine["utilization"] == pytest.approx(0.9)  # no load series: the CPU rule's metric
    assert body["success_rate"]["rate"] is None  # nothing judged yet, no invented figure
    assert client_with_role("viewer").get(f"{API}/status/").status_code == 200


def test_status_needs_a_key(api_client):
    assert api_client.get(f"{API}/status").status_code == 401


def test_evaluate_get_is_a_dry_run(client_with_role, hot_resource):
    response = client_with_role("viewer").get(f"{API}/evaluate", {"resource": hot_resource.pk})
    assert response.status_code == 200, response.content
    [decision] = response.json()["decisions"]
    assert decision["desired_units"] == 6 and decision["action"] == "scale_up"
    assert decision["decision_id"] is None
    assert ScalingDecision.objects.count() == 0


def test_evaluate_post_needs_operator_and_executes(client_with_role, hot_resource):
    assert client_with_role("viewer").post(f"{API}/evaluate", {}).status_code == 403
    response = client_with_role("operator").post(
        f"{API}/evaluate", {"resource": hot_resource.pk}, format="json"
    )
    assert response.status_code == 201, response.content
    [decision] = response.json()["decisions"]
    assert decision["status"] == "executed"
    assert ScalingDecision.objects.get().desired_units == 6
    listed = client_with_role("viewer").get(f"{API}/decisions", {"status": "executed"}).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [d["id"] for d in rows] == [decision["decision_id"]]


@pytest.mark.parametrize("query, field", [({"resource": 999999}, "resource"),
                                          ({"resource": "x"}, "resource")])  # fmt: skip
def test_evaluate_rejects_bad_input_naming_the_field(client_with_role, query, field):
    response = client_with_role("operator").post(f"{API}/evaluate", query, format="json")
    assert response.status_code == 400 and field in response.json()


def test_decision_filters_are_validated(client_with_role):
    response = client_with_role("viewer").get(f"{API}/decisions", {"status": "exploded"})
    assert response.status_code == 400 and "status" in response.json()


def test_only_admins_edit_rules_and_bad_values_name_the_field(client_with_role):
    rule = ScalingRule.objects.get(name="CPU utilisation")
    url = f"{API}/rules/{rule.pk}"
    assert (
        client_with_role("operator").patch(url, {"target": 0.5}, format="json").status_code == 403
    )
    admin = client_with_role("admin")
    response = admin.patch(url, {"target": 0.5}, format="json")
    assert response.status_code == 200, response.content
    rule.refresh_from_db()
    assert rule.target == 0.5
    bad = admin.patch(url, {"target": -1}, format="json")
    assert bad.status_code == 400 and "target" in bad.json()
    steps = admin.patch(url, {"kind": "step", "steps": []}, format="json")
    assert steps.status_code == 400 and "steps" in steps.json()


def test_overlapping_steps_are_a_400_naming_steps(client_with_role):
    # Two open-ended steps read as "at least 0.8: +1", "at least 0.9: +3"; the first match
    # won, so 0.95 got +1. AWS refuses overlapping step ranges; so does the API now.
    res = resource()
    body = {"resource": res.pk, "name": "api", "metric": "test.api", "kind": "step",
            "target": 1, "steps": [{"lower": 0.8, "change": 1}, {"lower": 0.9, "change": 3}]}  # fmt: skip
    admin = client_with_role("admin")
    response = admin.post(f"{API}/rules", body, format="json")
    assert response.status_code == 400 and "overlaps" in response.json()["steps"][0]
    body["steps"][0]["upper"] = 0.9
    assert admin.post(f"{API}/rules", body, format="json").status_code == 201


def test_resource_bounds_are_validated(client_with_role):
    body = {"name": "pool", "unit_capacity": 1.0, "min_units": 5, "max_units": 2,
            "current_units": 3}  # fmt: skip
    response = client_with_role("admin").post(f"{API}/resources", body, format="json")
    assert response.status_code == 400 and "min_units" in response.json()
    body.update(min_units=1, current_units=9)
    response = client_with_role("admin").post(f"{API}/resources", body, format="json")
    assert response.status_code == 400 and "current_units" in response.json()


@pytest.mark.parametrize("field", ["unit_capacity", "cost_per_unit_hour"])
def test_a_capacity_or_cost_too_large_to_multiply_is_refused(client_with_role, field):
    """1e308 per unit times five units is infinity: saved, it made every GET
    scaling/status a 500 (no JSON carries infinity)."""
    admin = client_with_role("admin")
    body = {"name": "quota", "unit_capacity": 1.0, "cost_per_unit_hour": 0.1, "current_units": 5}
    refused = admin.post(f"{API}/resources", {**body, field: 1e308}, format="json")
    assert refused.status_code == 400 and field in refused.json()
    made = admin.post(f"{API}/resources", body, format="json")
    assert made.status_code == 201
    patched = admin.patch(f"{API}/resources/{made.json()['id']}", {field: 1e308}, format="json")
    assert patched.status_code == 400 and field in patched.json()
    assert client_with_role("viewer").get(f"{API}/status").status_code == 200


def test_a_load_too_large_for_the_capacity_reports_no_utilisation(client_with_role):
    from tests.scaling.factories import resource, samples

    resource(name="tiny", unit_capacity=1e-9, current_units=1, load_series_name="tiny.load")
    samples("tiny.load", [1e300])
    answer = client_with_role("viewer").get(f"{API}/status")
    assert answer.status_code == 200
    (tiny,) = [r for r in answer.json()["resources"] if r["name"] == "tiny"]
    assert tiny["utilization"] is None


def test_a_bad_actuator_config_is_a_400_naming_it(client_with_role):
    res = resource(actuator="webhook", actuator_config={"url": "http://127.0.0.1:9/"})
    admin = client_with_role("admin")
    bad = {"actuator_config": {"url": "http://127.0.0.1:9/", "retries": "three"}}
    response = admin.patch(f"{API}/resources/{res.pk}", bad, format="json")
    assert response.status_code == 400 and "retries" in str(response.json()["actuator_config"])
    body = {"name": "hook", "unit_capacity": 1.0, "actuator": "celery",
            "actuator_config": {"mode": "turbo"}}  # fmt: skip
    response = admin.post(f"{API}/resources", body, format="json")
    assert response.status_code == 400 and "mode" in str(response.json()["actuator_config"])


def test_evaluate_post_reports_a_broken_actuator_and_acts_on_the_other_resources(
    client_with_role, monkeypatch
):
    monkeypatch.setenv("SCALING_WEBHOOK_SECRET", "s")
    ScalableResource.objects.update(enabled=False)  # only the two below
    bad = resource(name="a-bad", actuator="webhook",
                   actuator_config={"url": "http://127.0.0.1:9/", "retries": "three"})  # fmt: skip
    good = resource(name="b-good")
    cpu_rule(bad)
    cpu_rule(good)
    samples("test.cpu", [0.9])
    response = client_with_role("operator").post(f"{API}/evaluate", {}, format="json")
    assert response.status_code == 201, response.content
    by_name = {d["resource"]: d for d in response.json()["decisions"]}
    assert (
        by_name["a-bad"]["status"] == "failed" and "retries" in by_name["a-bad"]["actuator_detail"]
    )
    assert by_name["b-good"]["status"] == "executed"


def test_a_resource_created_without_current_units_starts_at_min_units(client_with_role):
    body = {"name": "pool", "unit_capacity": 1.0, "min_units": 3, "max_units": 10}
    response = client_with_role("admin").post(f"{API}/resources", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["current_units"] == body["min_units"]
    assert ScalableResource.objects.get(name="pool").current_units == body["min_units"]


def test_max_units_can_be_lowered_below_the_current_size_and_the_engine_scales_down(
    client_with_role,
):
    res = resource(current_units=30, max_units=40)
    cpu_rule(res)
    samples("test.cpu", [res.rules.get().target])  # on target: the rule asks for no change
    url = f"{API}/resources/{res.pk}"
    response = client_with_role("admin").patch(url, {"max_units": 10}, format="json")
    assert response.status_code == 200, response.content
    res.refresh_from_db()
    assert (res.max_units, res.current_units) == (10, 30)  # the job's to change
    [ev] = services.decisions_evaluate(resource_ids=[res.pk], execute=True)
    assert ev.row.status == "executed" and ev.row.action == "scale_down"
    res.refresh_from_db()
    assert res.current_units == res.max_units


def test_bounds_crossed_by_a_concurrent_edit_are_a_400_not_a_500(client_with_role, monkeypatch):
    res = resource(min_units=1, max_units=10)
    update = services.resource_update

    def another_admin_first(*, resource_id, data):
        ScalableResource.objects.filter(pk=resource_id).update(min_units=8)  # min 8 saved first
        return update(resource_id=resource_id, data=data)

    monkeypatch.setattr(services, "resource_update", another_admin_first)
    url = f"{API}/resources/{res.pk}"
    response = client_with_role("admin").patch(url, {"max_units": 5}, format="json")
    assert response.status_code == 400 and "min_units" in response.json(), response.content
    res.refresh_from_db()
    assert (res.min_units, res.max_units) == (8, 10)


def test_overview_has_the_scaling_section(client_with_role):
    response = client_with_role("viewer").get("/admin/api/phase3/overview")
    assert response.status_code == 200
    section = response.json()["scaling"]
    assert (
        section["active_rules"]
        == ScalingRule.objects.filter(enabled=True, resource__enabled=True).count()
    )


def test_a_bad_rule_kind_is_400_listing_the_model_choices(client_with_role):
    """``kind`` is a model field: the ModelSerializer builds it with the listing field."""
    rule = ScalingRule.objects.get(name="CPU utilisation")
    response = client_with_role("admin").patch(
        f"{API}/rules/{rule.pk}", {"kind": "sideways"}, format="json"
    )
    assert_names_valid_choices(response, "kind", "sideways", ScalingRule.Kind.values)

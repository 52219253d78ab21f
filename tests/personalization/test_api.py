"""The personalization API: roles, validation (400 naming the field), caching, schema."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone

from personalization.models import (
    Experiment,
    ExperimentResult,
    Exposure,
    Persona,
    PersonalizationRule,
)
from tests.choices import assert_names_valid_choices
from tests.schema import assert_matches_schema

from .factories import ExperimentFactory, RuleFactory, UserProfileFactory, add_events

pytestmark = pytest.mark.django_db
API = "/admin/api/phase3/personalization"


class TestConfigEndpoint:
    def test_returns_config_rules_variants_and_persona(self, client_with_role):
        UserProfileFactory(user_id="t-api", persona="socializer", persona_confidence=0.8)
        ExperimentFactory(key="t-api-exp")
        client = client_with_role("viewer")
        for path in (f"{API}/users/t-api/config", f"{API}/users/t-api/config/"):
            response = client.get(path)
            assert response.status_code == 200, response.content
            assert_matches_schema(response, path)
        body = response.json()
        assert body["persona"] == "socializer" and body["persona_confidence"] == 0.8
        assert "socializer-community" in body["rules"]
        assert body["config"]["sharing"] == {"quick_share": True}
        assert body["provenance"]["sharing.quick_share"] == "socializer-community"
        assert set(body["experiments"]) == {"t-api-exp"}
        assert body["cached"] is True  # second call of the loop
        assert Exposure.objects.filter(user_id="t-api").count() == 1

    def test_rule_edit_through_the_api_is_visible_immediately(self, client_with_role):
        UserProfileFactory(user_id="t-api2", persona="achiever", persona_confidence=0.9)
        viewer, admin = client_with_role("viewer"), client_with_role("admin")
        assert viewer.get(f"{API}/users/t-api2/config").json()["config"]["home"]["modules"][0] == (
            "progress"
        )
        rule = PersonalizationRule.objects.get(key="achiever-progress")
        response = admin.patch(
            f"{API}/rules/{rule.pk}", {"action": {"home": {"modules": ["trophies"]}}}, format="json"
        )
        assert response.status_code == 200, response.content
        body = viewer.get(f"{API}/users/t-api2/config").json()
        assert body["cached"] is False and body["config"]["home"]["modules"] == ["trophies"]

    def test_a_stored_rule_that_cannot_be_evaluated_does_not_fail_requests(self, client_with_role):
        # Stored around the API's validation (older data, a shell): skipped, not a 500.
        RuleFactory(key="t-unhashable", conditions={"segment": [{"a": 1}]}, action={"x": 1})
        ExperimentFactory(key="t-bad-targeting", targeting={"segment": [{"a": 1}]})
        UserProfileFactory(user_id="t-seg", segments=["power_user"])
        response = client_with_role("viewer").get(f"{API}/users/t-seg/config")
        assert response.status_code == 200, response.content
        body = response.json()
        assert "t-unhashable" not in body["rules"] and "t-bad-targeting" not in body["experiments"]

    def test_bad_user_id_is_a_400_naming_the_field(self, client_with_role):
        response = client_with_role("viewer").get(f"{API}/users/{'x' * 101}/config")
        assert response.status_code == 400 and "user_id" in response.json()

    @pytest.mark.parametrize("user_id", ["auth0|5f7c8ec7", "google-oauth2|1", "jo doe", "a/b", "ü"])
    def test_serves_every_user_id_telemetry_accepts(self, client_with_role, user_id):
        # Telemetry ingests any id up to 100 characters; the config endpoint refused every
        # one outside [\w.@:+-] (Auth0 ids among them) with a 400, and "a/b" was a 404.
        UserProfileFactory(user_id=user_id, persona="achiever", persona_confidence=0.9)
        ExperimentFactory(key="t-ids")
        client = client_with_role("viewer")
        for _ in range(2):  # a miss, then a cache hit
            response = client.get(f"{API}/users/{quote(user_id, safe='/')}/config")
            assert response.status_code == 200, response.content
            body = response.json()
            assert body["user_id"] == user_id and body["persona"] == "achiever"
        assert body["cached"] is True
        assert Exposure.objects.filter(user_id=user_id).count() == 1

    def test_needs_a_key(self, api_client):
        assert api_client.get(f"{API}/users/someone/config").status_code == 401


def test_status_reports_personas_rules_and_experiment_results(client_with_role):
    UserProfileFactory(persona="explorer")
    exp = ExperimentFactory(key="t-status")
    exposed = timezone.now() - timedelta(days=1)
    for i in range(40):
        Exposure.objects.create(experiment=exp, user_id=f"t-st{i}",
                                variant=("control", "treatment")[i % 2], exposed_at=exposed)  # fmt: skip
    add_events(
        [(f"t-st{i}", "t_convert", exposed + timedelta(hours=1), {}) for i in range(0, 40, 3)]
    )
    operator = client_with_role("operator")
    assert operator.post(f"{API}/experiments/{exp.pk}/recompute").status_code == 201
    response = client_with_role("viewer").get(f"{API}/status")
    assert response.status_code == 200
    assert_matches_schema(response, f"{API}/status")
    body = response.json()
    assert body["persona_distribution"]["explorer"] >= 1
    assert {r["key"] for r in body["active_rules"]} >= {"explorer-discovery", "optimizer-compact"}
    running = {e["key"]: e for e in body["running_experiments"]}
    assert running["t-status"]["exposures"] == 40
    comparison = running["t-status"]["results"][0]["comparisons"][0]
    assert comparison["variant"] == "treatment"
    low, high = comparison["relative_lift_ci"]["lower"], comparison["relative_lift_ci"]["upper"]
    assert low <= comparison["relative_lift"] <= high
    arms = running["t-status"]["results"][0]["arms"]
    assert [a["variant"] for a in arms] == ["control", "treatment"]
    assert all(a["ci"]["lower"] <= a["value"] <= a["ci"]["upper"] for a in arms)


def test_status_queries_do_not_grow_with_experiments(client_with_role):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    viewer = client_with_role("viewer")
    ExperimentFactory()
    viewer.get(f"{API}/status")  # warm the key lookup and its caches
    with CaptureQueriesContext(connection) as one:
        assert viewer.get(f"{API}/status").status_code == 200
    for _ in range(5):
        ExperimentFactory()
    with CaptureQueriesContext(connection) as six:
        assert viewer.get(f"{API}/status").status_code == 200
    assert len(six) == len(one), (len(one), len(six))


class TestRulesApi:
    def test_roles(self, client_with_role):
        body = {"key": "t-new", "name": "New", "action": {"a": 1}}
        assert (
            client_with_role("viewer").post(f"{API}/rules", body, format="json").status_code == 403
        )
        assert (
            client_with_role("operator").post(f"{API}/rules", body, format="json").status_code
            == 403
        )
        response = client_with_role("admin").post(f"{API}/rules", body, format="json")
        assert response.status_code == 201, response.content
        assert_matches_schema(response, f"{API}/rules", "post")

    @pytest.mark.parametrize(
        ("patch", "field"),
        [
            ({"conditions": {"persona": ["wizard"]}}, "conditions"),
            ({"conditions": {"attributes": {"age": {"between": 3}}}}, "conditions"),
            ({"conditions": {"segment": [{"a": 1}]}}, "conditions"),
            ({"conditions": {"persona": {"a": 1}}}, "conditions"),
            ({"action": {}}, "action"),
            ({"action": ["not", "an", "object"]}, "action"),
            ({"starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"}, "ends_at"),
        ],
    )
    def test_bad_input_names_the_field(self, client_with_role, patch, field):
        body = {"key": "t-bad", "name": "Bad", "action": {"a": 1}, **patch}
        response = client_with_role("admin").post(f"{API}/rules", body, format="json")
        assert response.status_code == 400 and field in response.json(), response.content
        assert not PersonalizationRule.objects.filter(key="t-bad").exists()


class TestExperimentsApi:
    def _body(self, **kw):
        return {
            "key": "t-new-exp",
            "name": "New experiment",
            "variants": [{"name": "control", "weight": 0.5}, {"name": "b", "weight": 0.5}],
            "primary_metric": {"kind": "conversion", "event": "purchase"},
            **kw,
        }

    def test_admin_creates_operator_starts_and_stops(self, client_with_role):
        admin, operator = client_with_role("admin"), client_with_role("operator")
        created = admin.post(f"{API}/experiments", self._body(), format="json")
        assert created.status_code == 201, created.content
        pk = created.json()["id"]
        assert created.json()["status"] == "draft"
        assert client_with_role("viewer").post(f"{API}/experiments/{pk}/start").status_code == 403
        started = operator.post(f"{API}/experiments/{pk}/start")
        assert started.status_code == 200 and started.json()["status"] == "running"
        again = operator.post(f"{API}/experiments/{pk}/start")
        assert again.status_code == 400 and "status" in again.json()
        new_variants = [*self._body()["variants"][:1], {"name": "c"}]
        frozen = admin.patch(f"{API}/experiments/{pk}", {"variants": new_variants}, format="json")
        assert frozen.status_code == 400 and "variants" in frozen.json()
        stopped = operator.post(f"{API}/experiments/{pk}/stop")
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        assert Experiment.objects.get(pk=pk).ends_at is not None

    @pytest.mark.parametrize(
        ("patch", "field"),
        [
            ({"variants": [{"name": "only"}]}, "variants"),
            ({"variants": [{"name": "a"}, {"name": "a"}]}, "variants"),
            ({"variants": [{"name": "a", "weight": -1}, {"name": "b"}]}, "variants"),
            ({"primary_metric": {"kind": "median", "event": "x"}}, "primary_metric"),
            ({"primary_metric": {"kind": "conversion"}}, "primary_metric"),
            ({"guardrail_metrics": [{"kind": "mean"}]}, "guardrail_metrics"),
            # Longer than any event name; its result key overflowed a column (a 500).
            ({"primary_metric": {"kind": "conversion", "event": "x" * 101}}, "primary_metric"),
            (
                {"guardrail_metrics": [{"kind": "mean", "event": "e", "property": "p" * 81}]},
                "guardrail_metrics",
            ),
            ({"targeting": {"persona": "wizard"}}, "targeting"),
            ({"targeting": {"segment": [{"a": 1}]}}, "targeting"),
            ({"coverage": 1.5}, "coverage"),
            ({"alpha": 0.9}, "alpha"),
            ({"planned_users": 0}, "planned_users"),
            ({"planned_users": 1}, "planned_users"),
            ({"variants": [{"name": 1}, {"name": 2}]}, "variants"),
            ({"variants": [{"name": "x" * 101}, {"name": "b"}]}, "variants"),
            ({"starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"}, "ends_at"),
        ],
    )
    def test_bad_input_names_the_field(self, client_with_role, patch, field):
        response = client_with_role("admin").post(
            f"{API}/experiments", self._body(**patch), format="json"
        )
        assert response.status_code == 400 and field in response.json(), response.content

    @pytest.mark.parametrize(
        ("field", "value"), [("alpha", 0.2), ("planned_users", 50), ("coverage", 0.5)]
    )
    def test_the_sequential_test_settings_are_frozen_once_started(
        self, client_with_role, field, value
    ):
        # Loosening alpha or planned_users after peeking turns a result "significant".
        exp = ExperimentFactory(key="t-frozen")
        before = getattr(exp, field)
        response = client_with_role("admin").patch(
            f"{API}/experiments/{exp.pk}", {field: value}, format="json"
        )
        assert response.status_code == 400 and field in response.json(), response.content
        exp.refresh_from_db()
        assert getattr(exp, field) == before

    def test_a_draft_may_still_change_its_sequential_settings(self, client_with_role):
        exp = ExperimentFactory(key="t-draft-alpha", status=Experiment.Status.DRAFT)
        response = client_with_role("admin").patch(
            f"{API}/experiments/{exp.pk}", {"alpha": 0.1, "planned_users": 500}, format="json"
        )
        assert response.status_code == 200, response.content
        exp.refresh_from_db()
        assert (exp.alpha, exp.planned_users) == (0.1, 500)

    def test_results_and_recompute(self, client_with_role):
        exp = ExperimentFactory(key="t-res")
        viewer, operator = client_with_role("viewer"), client_with_role("operator")
        assert viewer.get(f"{API}/experiments/{exp.pk}/results").json() == []
        assert viewer.post(f"{API}/experiments/{exp.pk}/recompute").status_code == 403
        response = operator.post(f"{API}/experiments/{exp.pk}/recompute")
        assert response.status_code == 201
        assert ExperimentResult.objects.filter(experiment=exp).count() == 1
        listed = viewer.get(f"{API}/experiments/{exp.pk}/results")
        assert listed.json()[0]["metric"] == "conversion:t_convert"
        assert [a["variant"] for a in listed.json()[0]["arms"]] == ["control", "treatment"]
        assert_matches_schema(listed, f"{API}/experiments/{exp.pk}/results")


class TestProfilesApi:
    def test_list_filter_history_and_recompute_roles(self, client_with_role):
        UserProfileFactory(user_id="t-p1", persona="optimizer")
        UserProfileFactory(user_id="t-p2", persona="explorer")
        viewer = client_with_role("viewer")
        listed = viewer.get(f"{API}/profiles?persona=optimizer")
        assert listed.status_code == 200
        assert_matches_schema(listed, f"{API}/profiles")
        ids = {p["user_id"] for p in listed.json()["results"]} if isinstance(
            listed.json(), dict) else {p["user_id"] for p in listed.json()}  # fmt: skip
        assert "t-p1" in ids and "t-p2" not in ids
        assert viewer.get(f"{API}/profiles?persona=wizard").status_code == 400
        assert viewer.get(f"{API}/profiles/t-p1/history").status_code == 200
        assert viewer.post(f"{API}/profiles/recompute").status_code == 403
        bad = client_with_role("operator").post(f"{API}/profiles/recompute", {"days": 0},
                                                format="json")  # fmt: skip
        assert bad.status_code == 400 and "days" in bad.json()

    def test_rule_factory_rules_apply_to_everyone(self, client_with_role):
        RuleFactory(key="t-everyone", action={"x": 1})
        body = client_with_role("viewer").get(f"{API}/users/anyone/config").json()
        assert body["config"] == {"x": 1} and body["provenance"] == {"x": "t-everyone"}


def test_overview_gains_the_personalization_section(client_with_role):
    before = client_with_role("viewer").get("/admin/api/phase3/overview").json()["personalization"]
    UserProfileFactory(persona="achiever")
    after = client_with_role("viewer").get("/admin/api/phase3/overview").json()["personalization"]
    assert after["profiles"] == before["profiles"] + 1
    assert after["active_rules"] == before["active_rules"] >= 4


def test_a_bad_persona_filter_is_400_listing_the_personas_and_none(client_with_role):
    response = client_with_role("viewer").get(f"{API}/profiles", {"persona": "wizard"})
    assert_names_valid_choices(response, "persona", "wizard", [*Persona.values, ""])


def test_the_longest_metric_a_check_lets_through_fits_its_result_column():
    from personalization.models import ExperimentResult
    from personalization.validation import (
        MAX_EVENT_NAME,
        MAX_PROPERTY_NAME,
        METRIC_KINDS,
        metric_errors,
        metric_name,
    )

    column = ExperimentResult._meta.get_field("metric").max_length
    for kind in METRIC_KINDS:
        longest = {"kind": kind, "event": "e" * MAX_EVENT_NAME, "property": "p" * MAX_PROPERTY_NAME}
        assert metric_errors(longest) == []
        assert len(metric_name(longest)) <= column

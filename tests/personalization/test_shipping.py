"""Shipping a variant: served to the targeted audience after the stop, no exposure, no
change to the analysis; recorded, reversible, visible in the API, admin and status."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone

from personalization import selectors, services
from personalization.engine.assignment import assign_variant
from personalization.models import Experiment, ExperimentResult, ExperimentShipment, Exposure
from tests.schema import assert_matches_schema

from .factories import ExperimentFactory, RuleFactory, UserProfileFactory, add_events

pytestmark = pytest.mark.django_db
API = "/admin/api/phase3/personalization"


def _run_with_results(key: str, **kwargs) -> Experiment:
    """A running experiment with 60 exposed users, conversions and a first result."""
    exp = ExperimentFactory(key=key, **kwargs)
    exposed = timezone.now() - timedelta(days=1)
    for i in range(60):
        Exposure.objects.create(experiment=exp, user_id=f"{key}-u{i}",
                                variant=("control", "treatment")[i % 2], exposed_at=exposed)  # fmt: skip
    add_events(
        [(f"{key}-u{i}", "t_convert", exposed + timedelta(hours=1), {}) for i in range(0, 60, 3)]
    )
    return exp


def _latest(exp: Experiment) -> ExperimentResult:
    return ExperimentResult.objects.filter(experiment=exp).order_by("-computed_at", "-pk")[0]


class TestShipService:
    def test_the_shipped_variant_reaches_the_targeted_audience_without_exposures(self):
        # Coverage 0.3 and 50/50 weights: while running most users got no variant or the
        # control; once shipped, every targeted user gets the treatment, so the rule
        # conditioned on it applies to them all, and the recorded run stays as it was.
        exp = _run_with_results("t-ship", targeting={"persona": ["optimizer"]}, coverage=0.3)
        RuleFactory(key="t-ship-ui", conditions={"variant": {"t-ship": ["treatment"]}},
                    action={"checkout": {"one_click": True}})  # fmt: skip
        services.experiment_stop(experiment_id=exp.pk)
        final = _latest(exp)
        exposures = Exposure.objects.count()
        UserProfileFactory(user_id="t-ship-outsider", persona="explorer")
        users = [f"t-ship-new{i}" for i in range(30)]
        for user in users:
            UserProfileFactory(user_id=user, persona="optimizer")
        assert services.config_resolve(user_id=users[0])["experiments"] == {}  # stopped

        shipped = services.experiment_ship(experiment_id=exp.pk, variant="treatment", by="alice")
        assert (shipped.status, shipped.shipped_variant, shipped.shipped_by) == (
            "stopped",
            "treatment",
            "alice",
        )
        assigned = {
            u: assign_variant(experiment_key="t-ship", user_id=u, variants=exp.variant_names,
                              weights=exp.weights, coverage=exp.coverage)
            for u in users
        }  # fmt: skip
        assert set(assigned.values()) != {"treatment"}  # assignment would not have done it
        for user in users:
            out = services.config_resolve(user_id=user)
            assert out["experiments"] == {"t-ship": "treatment"} and out["shipped"] == ["t-ship"]
            assert out["config"]["checkout"] == {"one_click": True}
            assert out["provenance"]["checkout.one_click"] == "t-ship-ui"
            assert services.config_resolve(user_id=user)["cached"]
        outsider = services.config_resolve(user_id="t-ship-outsider")
        assert outsider["experiments"] == {} and "checkout" not in outsider["config"]
        # Exposed users of the run who match the targeting get it too (control ones included).
        UserProfileFactory(user_id="t-ship-u0", persona="optimizer")  # was in the control
        assert services.config_resolve(user_id="t-ship-u0")["experiments"] == {
            "t-ship": "treatment"
        }

        assert Exposure.objects.count() == exposures  # no exposure recorded
        services.experiment_results_recompute(experiment_id=exp.pk)
        again = _latest(exp)
        assert again.pk != final.pk
        assert (again.users, again.arms) == (final.users, final.arms)
        assert again.comparisons[0]["fixed"] == final.comparisons[0]["fixed"]
        row = ExperimentShipment.objects.get(experiment=exp)
        assert (row.variant, row.shipped_by, row.unshipped_at) == ("treatment", "alice", None)
        assert row.shipped_at == shipped.shipped_at

    def test_shipping_a_running_experiment_stops_it_and_takes_the_final_look(self):
        exp = _run_with_results("t-ship-run")
        shipped = services.experiment_ship(experiment_id=exp.pk, variant="control", by="bob")
        exp.refresh_from_db()
        assert exp.status == "stopped" and exp.ends_at == shipped.shipped_at
        assert _latest(exp).computed_at >= exp.ends_at
        assert services.config_resolve(user_id="t-anyone")["experiments"] == {
            "t-ship-run": "control"
        }
        assert not Exposure.objects.filter(user_id="t-anyone").exists()

    def test_stop_and_ship_are_one_transaction(self):
        exp = ExperimentFactory(key="t-ship-atomic")
        with (
            mock.patch.object(
                ExperimentShipment.objects, "create", side_effect=IntegrityError("boom")
            ),
            pytest.raises(IntegrityError),
        ):
            services.experiment_ship(experiment_id=exp.pk, variant="treatment")
        exp.refresh_from_db()
        assert exp.status == "running" and exp.ends_at is None and exp.shipped_variant == ""

    def test_unship_rolls_back_and_the_history_keeps_every_step(self):
        exp = ExperimentFactory(key="t-unship")
        RuleFactory(key="t-unship-ui", conditions={"variant": {"t-unship": ["treatment"]}},
                    action={"new_ui": True})  # fmt: skip
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", by="alice")
        assert services.config_resolve(user_id="t-u")["config"]["new_ui"] is True
        again = services.experiment_ship(experiment_id=exp.pk, variant="treatment", by="carol")
        assert again.shipped_by == "alice"  # the same variant again changes nothing
        services.experiment_ship(experiment_id=exp.pk, variant="control", by="bob")
        out = services.config_resolve(user_id="t-u")
        assert not out["cached"] and out["experiments"] == {"t-unship": "control"}
        assert "new_ui" not in out["config"]
        services.experiment_unship(experiment_id=exp.pk, by="dave")
        out = services.config_resolve(user_id="t-u")
        assert not out["cached"] and out["experiments"] == {} and out["shipped"] == []
        exp.refresh_from_db()
        assert (exp.status, exp.shipped_variant, exp.shipped_at, exp.shipped_by) == (
            "stopped",
            "",
            None,
            "",
        )
        history = list(
            ExperimentShipment.objects.filter(experiment=exp)
            .order_by("shipped_at", "pk")
            .values_list("variant", "shipped_by", "unshipped_by")
        )
        assert history == [("treatment", "alice", "bob"), ("control", "bob", "dave")]
        assert not ExperimentShipment.objects.filter(unshipped_at__isnull=True).exists()

    def test_illegal_moves_name_the_field(self):
        draft = ExperimentFactory(status=Experiment.Status.DRAFT, starts_at=None)
        with pytest.raises(services.ExperimentStateError) as err:
            services.experiment_ship(experiment_id=draft.pk, variant="treatment")
        assert err.value.field == "status"
        running = ExperimentFactory()
        with pytest.raises(services.ExperimentStateError) as err:
            services.experiment_ship(experiment_id=running.pk, variant="winner")
        assert err.value.field == "variant" and '"treatment"' in str(err.value)
        running.refresh_from_db()
        assert running.status == "running"  # nothing stopped on a refused ship
        with pytest.raises(services.ExperimentStateError) as err:
            services.experiment_unship(experiment_id=running.pk)
        assert err.value.field == "shipped_variant"
        # Only ship writes the ship fields; the database refuses a running one shipped.
        services.experiment_update(experiment_id=running.pk,
                                   changes={"shipped_variant": "treatment", "name": "n"})  # fmt: skip
        running.refresh_from_db()
        assert running.name == "n" and running.shipped_variant == ""
        with pytest.raises(IntegrityError):
            Experiment.objects.filter(pk=running.pk).update(shipped_variant="treatment")

    def test_a_ship_or_unship_behind_a_cached_spec_is_served_as_stored(self):
        from personalization.services import config

        exp = ExperimentFactory(key="t-behind")
        cached_running = config._live_specs(config.config_version())
        with mock.patch.object(config, "_live_specs", return_value=cached_running):
            Experiment.objects.filter(pk=exp.pk).update(
                status=Experiment.Status.STOPPED, shipped_variant="treatment"
            )
            out = services.config_resolve(user_id="t-behind-user")
        assert out["experiments"] == {"t-behind": "treatment"}
        assert not Exposure.objects.filter(user_id="t-behind-user").exists()
        cached_shipped = config._live_specs(config.config_version() + 1)
        assert cached_shipped[1][0].shipped == "treatment"
        with mock.patch.object(config, "_live_specs", return_value=cached_shipped):
            Experiment.objects.filter(pk=exp.pk).update(shipped_variant="")
            out = services.config_resolve(user_id="t-behind-other")
        assert out["experiments"] == {} and not out["cached"]

    def test_a_shipped_variant_feeds_later_experiments_targeting(self):
        first = ExperimentFactory(key="t-ship-first")
        services.experiment_ship(experiment_id=first.pk, variant="treatment")
        ExperimentFactory(
            key="t-ship-second", targeting={"variant": {"t-ship-first": ["treatment"]}}
        )
        out = services.config_resolve(user_id="t-chain")
        assert out["experiments"]["t-ship-first"] == "treatment"
        assert "t-ship-second" in out["experiments"]
        assert list(Exposure.objects.filter(user_id="t-chain").values_list(
            "experiment__key", flat=True)) == ["t-ship-second"]  # fmt: skip


def test_status_and_overview_list_shipped_experiments():
    before = selectors.overview_section()["shipped_experiments"]
    exp = ExperimentFactory(key="t-ship-status", targeting={"persona": ["achiever"]})
    services.experiment_ship(experiment_id=exp.pk, variant="treatment", by="alice")
    report = selectors.status_report()
    shipped = {e["key"]: e for e in report["shipped_experiments"]}
    assert shipped["t-ship-status"]["variant"] == "treatment"
    assert shipped["t-ship-status"]["shipped_by"] == "alice"
    assert shipped["t-ship-status"]["targeting"] == {"persona": ["achiever"]}
    assert "t-ship-status" not in {e["key"] for e in report["running_experiments"]}
    assert selectors.overview_section()["shipped_experiments"] == before + 1
    services.experiment_unship(experiment_id=exp.pk)
    assert selectors.overview_section()["shipped_experiments"] == before


class TestShipApi:
    def test_admin_ships_and_unships_and_the_record_says_who(self, client_with_role):
        exp = ExperimentFactory(key="t-api-ship")
        url = f"{API}/experiments/{exp.pk}"
        assert client_with_role("viewer").post(f"{url}/ship", {"variant": "treatment"},
                                               format="json").status_code == 403  # fmt: skip
        operator = client_with_role("operator")
        assert operator.post(f"{url}/ship", {"variant": "treatment"},
                             format="json").status_code == 403  # fmt: skip
        assert operator.post(f"{url}/unship").status_code == 403
        admin = client_with_role("admin")
        response = admin.post(f"{url}/ship/", {"variant": "treatment"}, format="json")
        assert response.status_code == 200, response.content
        assert_matches_schema(response, f"{url}/ship", "post")
        body = response.json()
        assert body["status"] == "stopped" and body["shipped_variant"] == "treatment"
        assert body["shipped_by"].startswith("key:")
        assert body["shipments"][0]["variant"] == "treatment"
        config = client_with_role("viewer").get(f"{API}/users/t-api-ship-u/config").json()
        assert config["experiments"] == {"t-api-ship": "treatment"}
        assert config["shipped"] == ["t-api-ship"]
        status = client_with_role("viewer").get(f"{API}/status").json()
        assert "t-api-ship" in {e["key"] for e in status["shipped_experiments"]}

        response = admin.post(f"{url}/unship")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["shipped_variant"] == "" and body["shipments"][0]["unshipped_by"]
        config = client_with_role("viewer").get(f"{API}/users/t-api-ship-u/config").json()
        assert config["experiments"] == {} and not config["cached"]

    @pytest.mark.parametrize(
        "state, body, field",
        [("running", {"variant": "winner"}, "variant"), ("running", {}, "variant"),
         ("running", {"variant": 7}, "variant"), ("running", {"variant": ["a"]}, "variant"),
         ("draft", {"variant": "treatment"}, "status")],
    )  # fmt: skip
    def test_bad_input_is_a_400_naming_the_field(self, client_with_role, state, body, field):
        exp = ExperimentFactory(status=state)
        response = client_with_role("admin").post(
            f"{API}/experiments/{exp.pk}/ship", body, format="json"
        )
        assert response.status_code == 400 and field in response.json(), response.content
        if body.get("variant") == "winner":
            assert '"control", "treatment"' in response.json()["variant"][0]
        exp.refresh_from_db()
        assert exp.status == state and exp.shipped_variant == ""

    def test_unship_of_an_experiment_not_shipped_is_a_400(self, client_with_role):
        exp = ExperimentFactory(status=Experiment.Status.STOPPED)
        response = client_with_role("admin").post(f"{API}/experiments/{exp.pk}/unship")
        assert response.status_code == 400 and "shipped_variant" in response.json()

    def test_ship_fields_are_not_writable_by_an_edit(self, client_with_role):
        exp = ExperimentFactory(status=Experiment.Status.STOPPED)
        response = client_with_role("admin").patch(
            f"{API}/experiments/{exp.pk}", {"shipped_variant": "treatment"}, format="json"
        )
        assert response.status_code == 200
        exp.refresh_from_db()
        assert exp.shipped_variant == ""


class TestShipAdmin:
    def test_ship_and_unship_actions_record_the_admin_user(self, admin_client):
        exp = ExperimentFactory(key="t-adm-ship")
        url = reverse("admin:personalization_experiment_changelist")
        admin_client.post(url, {"action": "ship", "_selected_action": [exp.pk],
                                "variant": "treatment"})  # fmt: skip
        exp.refresh_from_db()
        assert (exp.status, exp.shipped_variant, exp.shipped_by) == (
            "stopped",
            "treatment",
            "admin",
        )
        page = admin_client.get(reverse("admin:personalization_experiment_change", args=[exp.pk]))
        assert page.status_code == 200 and b"treatment shipped" in page.content
        assert admin_client.get(url, {"shipped_variant__isempty": "0"}).status_code == 200
        admin_client.post(url, {"action": "unship", "_selected_action": [exp.pk]})
        exp.refresh_from_db()
        assert exp.shipped_variant == ""
        assert ExperimentShipment.objects.get(experiment=exp).unshipped_by == "admin"
        changelist = reverse("admin:personalization_experimentshipment_changelist")
        assert admin_client.get(changelist, {"q": "t-adm"}).status_code == 200

    def test_a_bad_variant_is_an_error_message_not_a_ship(self, admin_client):
        exp = ExperimentFactory(key="t-adm-bad")
        url = reverse("admin:personalization_experiment_changelist")
        response = admin_client.post(url, {"action": "ship", "_selected_action": [exp.pk],
                                           "variant": "nope"}, follow=True)  # fmt: skip
        assert b"unknown variant" in response.content
        exp.refresh_from_db()
        assert exp.status == "running" and exp.shipped_variant == ""

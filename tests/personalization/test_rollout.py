"""Percentage rollout of a shipped variant: served only to the users inside the percentage,
the same users staying in as it grows, every change recorded and invalidating cached
configurations; bad percentages refused naming the field (service, API, admin, CLI)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone

from personalization import selectors, services
from personalization.engine.rollout import in_rollout
from personalization.models import Experiment, ExperimentShipment, Exposure
from tests.schema import assert_matches_schema

from .factories import ExperimentFactory, RuleFactory, UserProfileFactory

pytestmark = pytest.mark.django_db
API = "/admin/api/phase3/personalization"
USERS = [f"t-ramp-{i}" for i in range(300)]


def _served(key: str, users: list[str]) -> set[str]:
    return {u for u in users if services.config_resolve(user_id=u)["experiments"].get(key)}


class TestRolloutService:
    def test_the_ramp_serves_the_engines_users_and_keeps_them_in_as_it_grows(self):
        exp = ExperimentFactory(key="t-ramp", targeting={"persona": ["optimizer"]})
        RuleFactory(key="t-ramp-ui", conditions={"variant": {"t-ramp": ["treatment"]}},
                    action={"checkout": {"one_click": True}})  # fmt: skip
        UserProfileFactory(user_id="t-ramp-outsider", persona="explorer")
        for user in USERS:
            UserProfileFactory(user_id=user, persona="optimizer")
        exposures = Exposure.objects.count()
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=10)

        previous: set[str] = set()
        for percent in (10, 50, 100):
            if percent != 10:
                services.experiment_rollout_set(experiment_id=exp.pk, rollout_percent=percent)
            served = _served("t-ramp", USERS)
            expected = {
                u for u in USERS if in_rollout(experiment_key="t-ramp", user_id=u, percent=percent)
            }
            assert served == expected  # exactly the engine's users, per user
            assert previous <= served  # nobody in at the lower percentage is dropped
            previous = served
        assert 0 < len(_in(10)) < 60 and len(_in(50)) > len(_in(10)) and previous == set(USERS)
        # Outside the targeting nothing is served, whatever the percentage.
        assert services.config_resolve(user_id="t-ramp-outsider")["experiments"] == {}
        assert Exposure.objects.count() == exposures

    def test_users_outside_the_rollout_get_the_default_configuration(self):
        exp = ExperimentFactory(key="t-ramp-out")
        RuleFactory(key="t-ramp-out-ui", conditions={"variant": {"t-ramp-out": ["treatment"]}},
                    action={"new_ui": True})  # fmt: skip
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=30)
        users = [f"t-out-{i}" for i in range(80)]
        inside = [
            u for u in users if in_rollout(experiment_key="t-ramp-out", user_id=u, percent=30)
        ]
        outside = [u for u in users if u not in inside]
        assert inside and outside
        for user in inside:
            out = services.config_resolve(user_id=user)
            assert out["config"]["new_ui"] is True and out["shipped"] == ["t-ramp-out"]
        for user in outside:
            out = services.config_resolve(user_id=user)
            # What an un-ship gives: the rules without the variant, no experiment listed.
            assert "new_ui" not in out["config"]
            assert out["experiments"] == {} and out["shipped"] == []
        # 0 % keeps the decision recorded but serves nobody.
        services.experiment_rollout_set(experiment_id=exp.pk, rollout_percent=0)
        assert _served("t-ramp-out", users) == set()
        exp.refresh_from_db()
        assert exp.shipped_variant == "treatment"

    def test_every_change_is_a_history_row_and_invalidates_cached_configurations(self):
        exp = ExperimentFactory(key="t-ramp-hist")
        shipped = services.experiment_ship(
            experiment_id=exp.pk, variant="treatment", rollout_percent=10, by="alice"
        )
        user = next(
            u for u in USERS if not in_rollout(experiment_key="t-ramp-hist", user_id=u, percent=10)
            and in_rollout(experiment_key="t-ramp-hist", user_id=u, percent=60)
        )  # fmt: skip
        assert services.config_resolve(user_id=user)["experiments"] == {}
        assert services.config_resolve(user_id=user)["cached"]
        version = services.config_version()

        services.experiment_rollout_set(experiment_id=exp.pk, rollout_percent=60, by="bob")
        assert services.config_version() > version
        out = services.config_resolve(user_id=user)
        assert not out["cached"] and out["experiments"] == {"t-ramp-hist": "treatment"}
        # The same percentage again, by either door, records and invalidates nothing.
        version = services.config_version()
        services.experiment_rollout_set(experiment_id=exp.pk, rollout_percent=60, by="carol")
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", by="carol")
        assert services.config_version() == version
        # Ramping through ship: the same variant at another percentage.
        services.experiment_ship(
            experiment_id=exp.pk, variant="treatment", rollout_percent=80, by="dave"
        )
        exp.refresh_from_db()
        assert (exp.rollout_percent, exp.shipped_at, exp.shipped_by) == (
            80,
            shipped.shipped_at,
            "alice",
        )  # the ship's own time and author stay; the ramp is in the history
        services.experiment_unship(experiment_id=exp.pk, by="erin")
        exp.refresh_from_db()
        assert (exp.shipped_variant, exp.rollout_percent) == ("", 100)
        history = list(
            ExperimentShipment.objects.filter(experiment=exp)
            .order_by("shipped_at", "pk")
            .values_list("variant", "rollout_percent", "shipped_by", "unshipped_by")
        )
        assert history == [
            ("treatment", 10, "alice", "bob"),
            ("treatment", 60, "bob", "dave"),
            ("treatment", 80, "dave", "erin"),
        ]

    def test_a_new_variant_ships_to_everyone_unless_told_and_keeps_the_same_users_order(self):
        exp = ExperimentFactory(key="t-ramp-new")
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=20)
        before = _served("t-ramp-new", USERS[:100])
        services.experiment_ship(experiment_id=exp.pk, variant="control", rollout_percent=20)
        # The rollout order is the experiment's, not the variant's: the same users.
        assert _served("t-ramp-new", USERS[:100]) == before
        services.experiment_ship(experiment_id=exp.pk, variant="treatment")
        exp.refresh_from_db()
        assert exp.rollout_percent == 100

    def test_a_ramp_behind_a_cached_spec_is_served_as_stored(self):
        from personalization.services import config

        exp = ExperimentFactory(key="t-ramp-behind")
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=100)
        cached_full = config._live_specs(config.config_version())
        assert cached_full[1][0].rollout == 100
        user = next(
            u for u in USERS if not in_rollout(experiment_key="t-ramp-behind", user_id=u, percent=5)
        )
        # Another process ramped down; this one still holds the specs from before.
        with mock.patch.object(config, "_live_specs", return_value=cached_full):
            Experiment.objects.filter(pk=exp.pk).update(rollout_percent=5)
            out = services.config_resolve(user_id=user)
        assert out["experiments"] == {} and not out["cached"]

    @pytest.mark.parametrize("bad", [-1, 100.01, float("nan"), float("inf"), True, "50", None])
    def test_bad_percentages_are_refused_naming_the_field(self, bad):
        running = ExperimentFactory(key="t-ramp-bad")
        with pytest.raises(services.ExperimentStateError) as err:
            services.experiment_ship(experiment_id=running.pk, variant="treatment",
                                     rollout_percent=bad if bad is not None else "")  # fmt: skip
        assert err.value.field == "rollout_percent"
        running.refresh_from_db()
        assert running.status == "running"  # refused before anything was stopped
        services.experiment_ship(experiment_id=running.pk, variant="treatment")
        with pytest.raises(services.ExperimentStateError) as err:
            services.experiment_rollout_set(experiment_id=running.pk, rollout_percent=bad)
        assert err.value.field == "rollout_percent"
        running.refresh_from_db()
        assert running.rollout_percent == 100
        assert ExperimentShipment.objects.filter(experiment=running).count() == 1

    def test_a_ramp_of_nothing_shipped_names_shipped_variant_and_the_database_holds_bounds(
        self,
    ):
        exp = ExperimentFactory(key="t-ramp-none", status=Experiment.Status.STOPPED)
        with pytest.raises(services.ExperimentStateError) as err:
            services.experiment_rollout_set(experiment_id=exp.pk, rollout_percent=50)
        assert err.value.field == "shipped_variant"
        with pytest.raises(IntegrityError):
            Experiment.objects.filter(pk=exp.pk).update(rollout_percent=150)


def _in(percent: float) -> set[str]:
    return {u for u in USERS if in_rollout(experiment_key="t-ramp", user_id=u, percent=percent)}


def test_status_lists_the_rollout_percentage_and_its_schedule():
    exp = ExperimentFactory(key="t-ramp-status")
    services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=25)
    shipped = {e["key"]: e for e in selectors.status_report()["shipped_experiments"]}
    assert shipped["t-ramp-status"]["rollout_percent"] == 25
    assert shipped["t-ramp-status"]["rollout_step_percent"] == 0
    services.experiment_ship(experiment_id=exp.pk, variant="treatment", ramp_step_percent=25,
                             ramp_every_hours=2)  # fmt: skip
    entry = {e["key"]: e for e in selectors.status_report()["shipped_experiments"]}["t-ramp-status"]
    assert (entry["rollout_percent"], entry["rollout_step_percent"]) == (25, 25)
    assert entry["rollout_step_hours"] == 2 and entry["rollout_next_step_at"] is not None


class TestRolloutApi:
    def test_admin_ships_at_a_percentage_and_ramps(self, client_with_role):
        exp = ExperimentFactory(key="t-api-ramp")
        url = f"{API}/experiments/{exp.pk}/ship"
        body = {"variant": "treatment", "rollout_percent": 10}
        assert client_with_role("operator").post(url, body, format="json").status_code == 403
        admin = client_with_role("admin")
        response = admin.post(url, body, format="json")
        assert response.status_code == 200, response.content
        assert_matches_schema(response, url, "post")
        assert response.json()["rollout_percent"] == 10
        assert response.json()["shipments"][0]["rollout_percent"] == 10

        response = admin.post(url, {"variant": "treatment", "rollout_percent": 50}, format="json")
        assert response.status_code == 200, response.content
        data = response.json()
        assert data["rollout_percent"] == 50
        assert [s["rollout_percent"] for s in data["shipments"]] == [50, 10]
        assert data["shipments"][1]["unshipped_by"].startswith("key:")
        viewer = client_with_role("viewer")
        for user in USERS[:40]:
            config = viewer.get(f"{API}/users/{user}/config").json()
            inside = in_rollout(experiment_key="t-api-ramp", user_id=user, percent=50)
            assert (config["experiments"] == {"t-api-ramp": "treatment"}) is inside
        status = viewer.get(f"{API}/status").json()
        shipped = {e["key"]: e for e in status["shipped_experiments"]}
        assert shipped["t-api-ramp"]["rollout_percent"] == 50

    @pytest.mark.parametrize(
        "value", [-1, 100.5, "abc", "", True, None, [10], {"a": 1}, "NaN", "Infinity"]
    )
    def test_bad_percentages_are_a_400_naming_the_field(self, client_with_role, value):
        exp = ExperimentFactory(key="t-api-ramp-bad")
        response = client_with_role("admin").post(
            f"{API}/experiments/{exp.pk}/ship",
            {"variant": "treatment", "rollout_percent": value},
            format="json",
        )
        assert response.status_code == 400, response.content
        assert list(response.json()) == ["rollout_percent"]
        exp.refresh_from_db()
        assert exp.status == "running" and exp.shipped_variant == ""

    def test_an_edit_cannot_move_the_rollout(self, client_with_role):
        exp = ExperimentFactory(key="t-api-ramp-edit")
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=10)
        response = client_with_role("admin").patch(
            f"{API}/experiments/{exp.pk}", {"rollout_percent": 90}, format="json"
        )
        assert response.status_code == 200
        exp.refresh_from_db()
        assert exp.rollout_percent == 10


class TestRolloutAdminAndCli:
    def test_admin_ships_at_a_percentage_ramps_and_says_why_it_refuses(self, admin_client):
        exp = ExperimentFactory(key="t-adm-ramp")
        url = reverse("admin:personalization_experiment_changelist")
        admin_client.post(url, {"action": "ship", "_selected_action": [exp.pk],
                                "variant": "treatment", "rollout_percent": "10"})  # fmt: skip
        exp.refresh_from_db()
        assert (exp.shipped_variant, exp.rollout_percent) == ("treatment", 10)
        admin_client.post(url, {"action": "set_rollout", "_selected_action": [exp.pk],
                                "rollout_percent": "50"})  # fmt: skip
        exp.refresh_from_db()
        assert exp.rollout_percent == 50
        row = ExperimentShipment.objects.get(experiment=exp, unshipped_at__isnull=True)
        assert (row.rollout_percent, row.shipped_by) == (50, "admin")
        page = admin_client.get(reverse("admin:personalization_experiment_change", args=[exp.pk]))
        assert b"treatment at 50% shipped" in page.content
        assert b"treatment at 10% shipped" in page.content
        for text in ("abc", "150", ""):
            response = admin_client.post(url, {"action": "set_rollout", "_selected_action": [exp.pk],
                                               "rollout_percent": text}, follow=True)  # fmt: skip
            assert b"rollout_percent: must be" in response.content.lower(), text
        response = admin_client.post(url, {"action": "ship", "_selected_action": [exp.pk],
                                           "variant": "control", "rollout_percent": "x"},
                                     follow=True)  # fmt: skip
        assert b"rollout_percent: must be" in response.content.lower()
        exp.refresh_from_db()
        assert (exp.shipped_variant, exp.rollout_percent) == ("treatment", 50)
        other = ExperimentFactory(key="t-adm-ramp-none", status=Experiment.Status.STOPPED)
        response = admin_client.post(url, {"action": "set_rollout", "_selected_action": [other.pk],
                                           "rollout_percent": "20"}, follow=True)  # fmt: skip
        assert b"shipped_variant: no variant" in response.content
        assert (
            admin_client.get(
                reverse("admin:personalization_experimentshipment_changelist")
            ).status_code
            == 200
        )

    def test_cli_ships_ramps_unships_and_names_the_field(self):
        exp = ExperimentFactory(key="t-cli-ramp")
        out = StringIO()
        call_command("personalization_ship", "t-cli-ramp", "--variant", "treatment",
                     "--rollout", "10", stdout=out)  # fmt: skip
        assert "treatment shipped to 10%" in out.getvalue()
        call_command("personalization_ship", "t-cli-ramp", "--rollout", "50", stdout=StringIO())
        exp.refresh_from_db()
        assert (exp.rollout_percent, exp.shipped_by) == (50, "cli")
        for bad in ("abc", "150", "-1", "nan"):
            with pytest.raises(CommandError, match="rollout_percent: must be"):
                call_command("personalization_ship", "t-cli-ramp", "--rollout", bad)
        exp.refresh_from_db()
        assert exp.rollout_percent == 50
        with pytest.raises(CommandError, match="say what to do"):
            call_command("personalization_ship", "t-cli-ramp")
        with pytest.raises(CommandError, match="no experiment"):
            call_command("personalization_ship", "t-nope", "--rollout", "5")
        call_command("personalization_ship", "t-cli-ramp", "--unship", stdout=StringIO())
        with pytest.raises(CommandError, match="shipped_variant"):
            call_command("personalization_ship", "t-cli-ramp", "--rollout", "5")


class TestScheduledRamp:
    def test_the_schedule_steps_when_due_records_each_step_and_ends_at_100(self):
        exp = ExperimentFactory(key="t-sched")
        start = timezone.now()
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=10,
                                 ramp_step_percent=40, ramp_every_hours=6, by="alice",
                                 now=start)  # fmt: skip
        exp.refresh_from_db()
        assert exp.rollout_next_step_at == start + timedelta(hours=6)
        before = _served("t-sched", USERS[:100])
        assert services.rollouts_advance(now=start + timedelta(hours=5))["advanced"] == 0
        exp.refresh_from_db()
        assert exp.rollout_percent == 10
        # Due: one step, and only one even when the job comes back late.
        counts = services.rollouts_advance(now=start + timedelta(hours=20))
        assert counts == {"due": 1, "advanced": 1, "completed": 0}
        exp.refresh_from_db()
        assert exp.rollout_percent == 50
        assert exp.rollout_next_step_at == start + timedelta(hours=26)
        after = _served("t-sched", USERS[:100])
        assert before < after  # served at once (invalidated) and nobody dropped
        services.rollouts_advance(now=start + timedelta(hours=26))
        exp.refresh_from_db()
        assert (exp.rollout_percent, exp.rollout_next_step_at) == (90, start + timedelta(hours=32))
        assert services.rollouts_advance(now=start + timedelta(hours=40))["completed"] == 1
        exp.refresh_from_db()
        assert (exp.rollout_percent, exp.rollout_step_percent, exp.rollout_next_step_at) == (
            100,
            0,
            None,
        )
        assert services.rollouts_advance(now=start + timedelta(days=9))["due"] == 0
        history = list(
            ExperimentShipment.objects.filter(experiment=exp)
            .order_by("shipped_at", "pk")
            .values_list("rollout_percent", "shipped_by")
        )
        assert history == [(10, "alice"), (50, services.RAMP_ACTOR), (90, services.RAMP_ACTOR),
                           (100, services.RAMP_ACTOR)]  # fmt: skip

    def test_a_manual_change_an_unship_or_a_new_ship_ends_the_schedule(self):
        exp = ExperimentFactory(key="t-sched-end")
        start = timezone.now()
        ramp = {"ramp_step_percent": 10, "ramp_every_hours": 1}
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=20,
                                 now=start, **ramp)  # fmt: skip
        # Ramped down by hand (something broke): the schedule must not ramp back up.
        services.experiment_rollout_set(experiment_id=exp.pk, rollout_percent=5)
        assert services.rollouts_advance(now=start + timedelta(hours=3))["due"] == 0
        exp.refresh_from_db()
        assert (exp.rollout_percent, exp.rollout_step_percent) == (5, 0)
        # The same percentage again still takes the ramp over.
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", now=start, **ramp)
        services.experiment_rollout_set(experiment_id=exp.pk, rollout_percent=5)
        exp.refresh_from_db()
        assert exp.rollout_step_percent == 0 and exp.rollout_next_step_at is None
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", now=start, **ramp)
        services.experiment_ship(experiment_id=exp.pk, variant="control")
        exp.refresh_from_db()
        assert (exp.rollout_percent, exp.rollout_step_percent) == (100, 0)
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=1,
                                 now=start, **ramp)  # fmt: skip
        services.experiment_unship(experiment_id=exp.pk)
        exp.refresh_from_db()
        assert (exp.rollout_step_percent, exp.rollout_next_step_at) == (0, None)
        assert services.rollouts_advance(now=start + timedelta(hours=3))["due"] == 0

    def test_the_beat_job_is_scheduled_and_runs_the_service(self):
        from personalization import tasks
        from personalization.schedules import SCHEDULES

        assert "personalization.advance_rollouts" in {s["task"] for s in SCHEDULES}
        exp = ExperimentFactory(key="t-sched-task")
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=10,
                                 ramp_step_percent=10, ramp_every_hours=0.25,
                                 now=timezone.now() - timedelta(hours=1))  # fmt: skip
        assert tasks.advance_rollouts()["advanced"] == 1
        exp.refresh_from_db()
        assert exp.rollout_percent == 20

    def test_api_sets_a_ramp_and_names_bad_or_missing_fields(self, client_with_role):
        exp = ExperimentFactory(key="t-sched-api")
        url = f"{API}/experiments/{exp.pk}/ship"
        admin = client_with_role("admin")
        response = admin.post(url, {"variant": "treatment", "rollout_percent": 10,
                                    "ramp_step_percent": 20, "ramp_every_hours": 12},
                              format="json")  # fmt: skip
        assert response.status_code == 200, response.content
        assert_matches_schema(response, url, "post")
        body = response.json()
        assert (body["rollout_step_percent"], body["rollout_step_hours"]) == (20, 12)
        assert body["rollout_next_step_at"]
        for bad, field in [({"ramp_step_percent": 20}, "ramp_every_hours"),
                           ({"ramp_every_hours": 2}, "ramp_step_percent"),
                           ({"ramp_step_percent": 0, "ramp_every_hours": 2}, "ramp_step_percent"),
                           ({"ramp_step_percent": 5, "ramp_every_hours": 0.01}, "ramp_every_hours"),
                           ({"ramp_step_percent": "x", "ramp_every_hours": 2}, "ramp_step_percent")]:  # fmt: skip
            response = admin.post(url, {"variant": "treatment", **bad}, format="json")
            assert response.status_code == 400 and field in response.json(), (bad, response.content)
        exp.refresh_from_db()
        assert (exp.rollout_step_percent, exp.rollout_step_hours) == (20, 12)

    def test_cli_schedules_a_ramp_and_names_bad_fields(self):
        exp = ExperimentFactory(key="t-sched-cli")
        out = StringIO()
        call_command("personalization_ship", "t-sched-cli", "--variant", "treatment",
                     "--rollout", "10", "--ramp-step", "15", "--ramp-every", "24", stdout=out)  # fmt: skip
        assert "+15% every 24 h" in out.getvalue()
        exp.refresh_from_db()
        assert (exp.rollout_step_percent, exp.rollout_step_hours) == (15, 24)
        for args, field in [(["--ramp-step", "abc", "--ramp-every", "2"], "ramp_step_percent"),
                            (["--ramp-step", "5"], "ramp_every_hours"),
                            (["--ramp-step", "5", "--ramp-every", "0"], "ramp_every_hours")]:  # fmt: skip
            with pytest.raises(CommandError, match=field):
                call_command("personalization_ship", "t-sched-cli", "--variant", "treatment", *args)
        with pytest.raises(CommandError, match="go with --variant"):
            call_command("personalization_ship", "t-sched-cli", "--ramp-step", "5")


def test_the_evaluation_command_measures_share_and_independence():
    out = StringIO()
    call_command("personalization_evaluate_rollout", "--users", "4000", stdout=out)
    text = out.getvalue()
    shares = {
        int(line.split("%")[0]): float(line.split("share in ")[1].split()[0])
        for line in text.splitlines()
        if "% : share" in line.replace("%:", "% :")
    }
    assert set(shares) == {1, 10, 50, 90}
    for percent, share in shares.items():
        assert abs(share - percent / 100) < 0.03, (percent, share)
    assert "grid chi-square" in text and "among control" in text


class TestScheduledRampReview:
    def test_a_percentage_sent_to_the_api_ends_the_schedule_as_the_cli_and_admin_do(
        self, client_with_role
    ):
        """The API has no "set rollout" action: shipping the shipped variant at a percentage
        is its manual setting, and holding a ramp at the current step must stop it (the
        schedule used to keep ramping up, as the CLI's --rollout and the admin's action do
        not)."""
        exp = ExperimentFactory(key="t-sched-hold")
        start = timezone.now() - timedelta(hours=3)
        services.experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=10,
                                 ramp_step_percent=10, ramp_every_hours=1, now=start)  # fmt: skip
        response = client_with_role("admin").post(
            f"{API}/experiments/{exp.pk}/ship",
            {"variant": "treatment", "rollout_percent": 10},
            format="json",
        )
        assert response.status_code == 200, response.content
        assert response.json()["rollout_step_percent"] == 0
        assert services.rollouts_advance()["due"] == 0
        exp.refresh_from_db()
        assert (exp.rollout_percent, exp.rollout_next_step_at) == (10, None)
        # Nothing else changed: no history row for the same percentage.
        assert ExperimentShipment.objects.filter(experiment=exp).count() == 1

    def test_a_ramp_needs_a_rollout_below_100_on_every_face(self, client_with_role):
        """A ramp on a 100 % ship used to be scheduled, and its one "step" recorded a history
        row 100 -> 100 and invalidated every cached configuration."""
        exp = ExperimentFactory(key="t-sched-full", status=Experiment.Status.STOPPED)
        ramp = {"ramp_step_percent": 10, "ramp_every_hours": 1}
        with pytest.raises(services.ExperimentStateError) as caught:
            services.experiment_ship(experiment_id=exp.pk, variant="treatment", **ramp)
        assert caught.value.field == "ramp_step_percent"
        response = client_with_role("admin").post(
            f"{API}/experiments/{exp.pk}/ship", {"variant": "treatment", **ramp}, format="json"
        )
        assert response.status_code == 400 and "ramp_step_percent" in response.json()
        with pytest.raises(CommandError, match="ramp_step_percent"):
            call_command("personalization_ship", "t-sched-full", "--variant", "treatment",
                         "--rollout", "100", "--ramp-step", "5", "--ramp-every", "1")  # fmt: skip
        exp.refresh_from_db()
        assert exp.shipped_variant == "" and not exp.shipments.exists()
        # The shipped variant at 100 % cannot be given a ramp either.
        services.experiment_ship(experiment_id=exp.pk, variant="treatment")
        with pytest.raises(services.ExperimentStateError, match="below 100"):
            services.experiment_ship(experiment_id=exp.pk, variant="treatment", **ramp)
        # A schedule on a full rollout written from a shell ends without a history row.
        Experiment.objects.filter(pk=exp.pk).update(
            rollout_step_percent=10, rollout_step_hours=1,
            rollout_next_step_at=timezone.now() - timedelta(minutes=1),
        )  # fmt: skip
        assert services.rollouts_advance() == {"due": 1, "advanced": 0, "completed": 1}
        exp.refresh_from_db()
        assert (exp.rollout_step_percent, exp.rollout_next_step_at) == (0, None)
        assert exp.shipments.count() == 1

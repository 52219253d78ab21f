"""Operators and jobs writing the same rows at the same time: neither undoes the other.

Each test puts the competing write exactly where it used to be lost: between an edit
form being read and saved, or between a recompute reading its previous state and
committing its own.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from personalization import services
from personalization.admin import ExperimentAdmin, UserProfileAdmin
from personalization.api import ExperimentSerializer
from personalization.models import Experiment, ExperimentResult, PersonaChange
from personalization.services import experiments as experiments_service
from tests.locking import OtherConnection

from .factories import ExperimentFactory, UserProfileFactory, add_events
from .test_services import _experiment_with_data

API = "/admin/api/phase3/personalization"


def _experiment_form(exp: Experiment, **overrides) -> dict:
    """The experiment change form as the admin page rendered it (split date/time widgets)."""

    def split(name: str, value) -> dict:
        local = timezone.localtime(value) if value else None
        return {
            f"{name}_0": local.strftime("%Y-%m-%d") if local else "",
            f"{name}_1": local.strftime("%H:%M:%S") if local else "",
        }

    return {
        "key": exp.key, "name": exp.name, "description": exp.description,
        "variants": '[{"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5}]',
        "coverage": exp.coverage, "targeting": "{}",
        "primary_metric": '{"kind": "conversion", "event": "t_convert"}',
        "guardrail_metrics": "[]", "alpha": exp.alpha, "planned_users": exp.planned_users,
        "minimum_effect": exp.minimum_effect,
        **split("starts_at", exp.starts_at), **split("ends_at", exp.ends_at),
        "results-TOTAL_FORMS": "0", "results-INITIAL_FORMS": "0",
        "results-MIN_NUM_FORMS": "0", "results-MAX_NUM_FORMS": "0",
        "_save": "Save", **overrides,
    }  # fmt: skip


@pytest.mark.django_db
class TestProfileAdmin:
    def test_saving_attributes_does_not_revert_a_recompute_that_ran_meanwhile(
        self, admin_client, monkeypatch
    ):
        # The admin built its copy of the profile, then the job rewrote the row (on
        # PostgreSQL: the admin's UPDATE waited for the job's row lock). The full save
        # put back the old persona, sessions and model run, and the persona history
        # (optimizer -> none) no longer matched the stored persona.
        profile = UserProfileFactory(user_id="t-race", persona="optimizer", sessions=0)
        now = timezone.now()
        add_events([("t-race", "t_click", now - timedelta(hours=h), {}) for h in range(1, 6)])
        save_form = UserProfileAdmin.save_form

        def job_runs_meanwhile(self, request, form, change):
            obj = save_form(self, request, form, change)
            services.profiles_recompute(days=28, now=now)
            return obj

        monkeypatch.setattr(UserProfileAdmin, "save_form", job_runs_meanwhile)
        url = reverse("admin:personalization_userprofile_change", args=[profile.pk])
        assert b'name="segments"' not in admin_client.get(url).content  # the job's
        response = admin_client.post(url, {
            "attributes": '{"plan": "pro"}', "segments": '["power_user"]',
            "changes-TOTAL_FORMS": "0", "changes-INITIAL_FORMS": "0", "_save": "Save",
        })  # fmt: skip
        assert response.status_code == 302, response.content
        profile.refresh_from_db()
        assert profile.attributes == {"plan": "pro"}
        assert profile.event_count == 5 and profile.model_run is not None
        assert profile.segments != ["power_user"]
        assert profile.persona == PersonaChange.objects.get(profile=profile).persona == ""


@pytest.mark.django_db
class TestExperimentEdits:
    def test_admin_form_opened_before_a_stop_does_not_clear_its_end(self, admin_client):
        exp = ExperimentFactory(key="t-stale-form")
        url = reverse("admin:personalization_experiment_change", args=[exp.pk])
        assert b'name="ends_at_0"' in admin_client.get(url).content
        page = _experiment_form(exp)  # ends_at empty: the experiment was running
        stopped = services.experiment_stop(experiment_id=exp.pk)
        assert admin_client.post(url, page).status_code == 302
        exp.refresh_from_db()
        assert exp.status == "stopped" and exp.ends_at == stopped.ends_at

    def test_a_started_experiment_keeps_its_arms_in_the_admin(self, admin_client):
        # As in the API: new variants or coverage mid-run would mix users assigned under
        # different rules into one comparison.
        exp = ExperimentFactory(key="t-frozen-admin")
        url = reverse("admin:personalization_experiment_change", args=[exp.pk])
        page = admin_client.get(url).content
        assert b'name="variants"' not in page and b'name="coverage"' not in page
        assert b'name="starts_at_0"' not in page  # the window results are counted over
        assert b'name="name"' in page
        other = '[{"name": "control", "weight": 0.9}, {"name": "treatment", "weight": 0.1}]'
        form = _experiment_form(exp, variants=other, coverage=0.2, name="renamed")
        assert admin_client.post(url, form).status_code == 302
        exp.refresh_from_db()
        assert exp.name == "renamed"
        assert exp.coverage == 1.0 and exp.variants[0]["weight"] == 0.5

    def test_an_edit_read_before_a_start_cannot_change_the_arms_after_it(self):
        exp = ExperimentFactory(key="t-start-race", status=Experiment.Status.DRAFT)
        changes = {"coverage": 0.3}  # validated while the experiment was a draft
        services.experiment_start(experiment_id=exp.pk)
        with pytest.raises(services.ExperimentStateError) as caught:
            services.experiment_update(experiment_id=exp.pk, changes=changes)
        assert caught.value.field == "coverage"
        exp.refresh_from_db()
        assert exp.coverage == 1.0

    def test_a_stop_during_an_admin_save_is_not_undone(self, admin_client, monkeypatch):
        exp = ExperimentFactory(key="t-stop-mid-save")
        save_form = ExperimentAdmin.save_form
        stopped: list[Experiment] = []

        def stop_meanwhile(self, request, form, change):
            obj = save_form(self, request, form, change)
            stopped.append(services.experiment_stop(experiment_id=obj.pk))
            return obj

        monkeypatch.setattr(ExperimentAdmin, "save_form", stop_meanwhile)
        url = reverse("admin:personalization_experiment_change", args=[exp.pk])
        response = admin_client.post(url, _experiment_form(exp, name="renamed"))
        assert response.status_code == 302, response.content
        exp.refresh_from_db()
        assert exp.name == "renamed"
        assert exp.status == "stopped" and exp.ends_at == stopped[0].ends_at

    def test_api_put_after_or_during_a_stop_keeps_its_end(self, client_with_role, monkeypatch):
        admin = client_with_role("admin")
        exp = ExperimentFactory(key="t-stale-put")
        body = admin.get(f"{API}/experiments/{exp.pk}").json()
        stopped = services.experiment_stop(experiment_id=exp.pk)
        stale = admin.put(f"{API}/experiments/{exp.pk}", body, format="json")
        assert stale.status_code == 400 and "ends_at" in stale.json()

        other = ExperimentFactory(key="t-put-race")
        body = admin.get(f"{API}/experiments/{other.pk}").json()
        validate = ExperimentSerializer.validate

        def stop_after_validation(self, attrs):
            attrs = validate(self, attrs)
            services.experiment_stop(experiment_id=self.instance.pk)
            return attrs

        monkeypatch.setattr(ExperimentSerializer, "validate", stop_after_validation)
        raced = admin.put(f"{API}/experiments/{other.pk}", {**body, "name": "renamed"},
                          format="json")  # fmt: skip
        assert raced.status_code == 200, raced.content
        other.refresh_from_db()
        assert other.name == "renamed" and other.status == "stopped" and other.ends_at
        assert raced.json()["status"] == "stopped"
        exp.refresh_from_db()
        assert exp.ends_at == stopped.ends_at


@pytest.mark.django_db(transaction=True)
def test_concurrent_result_recomputes_keep_every_sequential_look(postgres, monkeypatch):
    # The hourly job and an operator's "recompute now" both read the same previous
    # sequential state; the second to commit dropped the first's look (its running
    # minimum p-value and narrowed interval).
    exp, _ = _experiment_with_data(seed=7)
    services.experiment_results_recompute(experiment_id=exp.pk)  # look 1

    thread = OtherConnection(lambda: services.experiment_results_recompute(experiment_id=exp.pk))
    # The job has read its previous state but not written its result yet.
    thread.start_at(monkeypatch, experiments_service, "analyse_experiment")
    services.experiment_results_recompute(experiment_id=exp.pk)
    thread.join()
    assert isinstance(thread.outcome[0], dict), thread.outcome
    results = list(ExperimentResult.objects.filter(experiment=exp).order_by("-computed_at"))
    assert len(results) == 3
    states = [r.sequential_state["treatment"] for r in results]
    assert [s["looks"] for s in states] == [3, 2, 1]
    assert states[0]["p_value"] <= min(s["p_value"] for s in states[1:])

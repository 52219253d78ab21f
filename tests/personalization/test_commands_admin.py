"""Admin pages and actions, management commands, tasks and schedules of personalization."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from celery import current_app
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from personalization.models import (
    Experiment,
    ExperimentResult,
    Exposure,
    PersonalizationRule,
)
from personalization.schedules import SCHEDULES
from phase3.models import JobRun

from .factories import ExperimentFactory, RuleFactory, UserProfileFactory, add_events

pytestmark = pytest.mark.django_db

MODELS = ["userprofile", "personachange", "personamodelrun", "personalizationrule",
          "experiment", "exposure", "experimentresult"]  # fmt: skip


def _experiment_with_results():
    exp = ExperimentFactory(key="t-admin")
    exposed = timezone.now() - timedelta(days=1)
    for i in range(60):
        Exposure.objects.create(experiment=exp, user_id=f"t-ad{i}",
                                variant=("control", "treatment")[i % 2], exposed_at=exposed)  # fmt: skip
    add_events(
        [(f"t-ad{i}", "t_convert", exposed + timedelta(hours=1), {}) for i in range(0, 60, 4)]
    )
    call_command("personalization_recompute_experiments", "--key", "t-admin", stdout=StringIO())
    return exp


class TestAdmin:
    @pytest.mark.parametrize("model", MODELS)
    def test_changelists_load_and_search(self, admin_client, model):
        UserProfileFactory()
        url = reverse(f"admin:personalization_{model}_changelist")
        assert admin_client.get(url).status_code == 200
        assert admin_client.get(url, {"q": "t-"}).status_code == 200

    def test_results_page_survives_undefined_lift(self, admin_client):
        exp = ExperimentFactory(key="t-zero")
        for i in range(20):  # nobody converts: the relative lift is undefined (0 / 0)
            Exposure.objects.create(experiment=exp, user_id=f"t-z{i}",
                                    variant=("control", "treatment")[i % 2])  # fmt: skip
        call_command("personalization_recompute_experiments", "--key", "t-zero", stdout=StringIO())
        page = admin_client.get(reverse("admin:personalization_experiment_results", args=[exp.pk]))
        assert page.status_code == 200 and b"n/a" in page.content

    def test_chart_pages_draw(self, admin_client):
        UserProfileFactory(persona="achiever")
        page = admin_client.get(reverse("admin:personalization_userprofile_personas"))
        assert page.status_code == 200 and b"plotly" in page.content.lower()
        exp = _experiment_with_results()
        page = admin_client.get(reverse("admin:personalization_experiment_results", args=[exp.pk]))
        assert page.status_code == 200
        assert b"always-valid" in page.content and b"treatment" in page.content
        assert b"95% wilson interval" in page.content  # each arm's own rate
        result = ExperimentResult.objects.get(experiment=exp)
        page = admin_client.get(
            reverse("admin:personalization_experimentresult_change", args=[result.pk])
        )
        assert page.status_code == 200 and b"30 users" in page.content

    def test_rule_form_rejects_bad_conditions(self, admin_client):
        url = reverse("admin:personalization_personalizationrule_add")
        response = admin_client.post(url, {"key": "t-form", "name": "x", "priority": 1,
                                           "conditions": '{"persona": ["wizard"]}',
                                           "action": '{"a": 1}'})  # fmt: skip
        assert response.status_code == 200  # the form again, with the error
        assert b"wizard" in response.content
        assert not PersonalizationRule.objects.filter(key="t-form").exists()

    def test_actions_call_services(self, admin_client):
        exp = ExperimentFactory(status=Experiment.Status.DRAFT)
        url = reverse("admin:personalization_experiment_changelist")
        admin_client.post(url, {"action": "start", "_selected_action": [exp.pk]})
        exp.refresh_from_db()
        assert exp.status == "running"
        rule = RuleFactory(enabled=True)
        url = reverse("admin:personalization_personalizationrule_changelist")
        admin_client.post(url, {"action": "disable", "_selected_action": [rule.pk]})
        rule.refresh_from_db()
        assert not rule.enabled


class TestCommands:
    def test_bad_arguments_exit_with_a_clear_message(self):
        with pytest.raises(CommandError, match="--days"):
            call_command("personalization_recompute_profiles", "--days", "0")
        with pytest.raises(CommandError, match="no experiment"):
            call_command("personalization_recompute_experiments", "--key", "missing")
        with pytest.raises(CommandError, match="--days"):
            call_command("personalization_evaluate", "--days", "0")

    def test_evaluate_reports_accuracy_on_demo_users(self, demo_world):
        out = StringIO()
        call_command("personalization_evaluate", "--days", "30", stdout=out)
        text = out.getvalue()
        assert "accuracy" in text and "ece" in text and "confusion" in text

    def test_evaluate_experiments_reports_power_and_cuped(self):
        with pytest.raises(CommandError, match="--experiments"):
            call_command("personalization_evaluate_experiments", "--experiments", "5")
        out = StringIO()
        call_command(
            "personalization_evaluate_experiments", "--experiments", "400", "--json", stdout=out
        )
        report = json.loads(out.getvalue())
        assert len(report["power"]) == 6 and report["power"][0]["users_control"] == 3841
        assert all(0 < p["simulated_power"] < 1 for p in report["power"])
        assert [c["rho"] for c in report["cuped"]] == [0.3, 0.6, 0.9]
        # More correlation, more variance removed (each figure is about rho^2).
        reductions = [c["reported_reduction"] for c in report["cuped"]]
        assert reductions == sorted(reductions) and reductions[-1] > 0.7
        text = StringIO()
        call_command("personalization_evaluate_experiments", "--experiments", "40", stdout=text)
        assert "simulated" in text.getvalue() and "rho=0.9" in text.getvalue()

    def test_experiment_recompute_command(self):
        exp = _experiment_with_results()
        assert ExperimentResult.objects.filter(experiment=exp).count() == 1

    def test_default_rules_command_is_idempotent(self):
        out = StringIO()
        call_command("personalization_default_rules", stdout=out)
        assert "'created': 0" in out.getvalue()


class TestTasksAndSchedules:
    def test_schedules_name_registered_tasks(self):
        import personalization.tasks  # noqa: F401  (registers the tasks)

        for schedule in SCHEDULES:
            assert schedule["task"] in current_app.tasks
            assert "crontab" in schedule or "every_seconds" in schedule

    def test_task_records_a_job_run_with_counts(self):
        from personalization.tasks import recompute_experiment_results

        ExperimentFactory(key="t-task")
        recompute_experiment_results.apply()
        run = JobRun.objects.get(task_name="personalization.recompute_experiment_results")
        assert run.status == "success"
        assert run.counts == {"experiments": 1, "results": 1, "failed": 0}

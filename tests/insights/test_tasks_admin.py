"""Thin layers: tasks call one service and chain generation; admin pages render."""

from __future__ import annotations

import pytest
from django.urls import reverse

from insights import tasks
from insights.models import Insight, MLModel
from insights.schedules import SCHEDULES
from insights.services.errors import InsufficientData

from .factories import InsightFactory, MLModelFactory, SegmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.generate_insights, "delay", lambda: calls.append(1))
    return calls


def test_training_task_returns_counts_and_asks_for_insights(demo_world, enqueued):
    counts = tasks.state_patterns(days=7)
    assert counts["states"] > 0 and counts["model_version"] == 1
    assert enqueued == [1]


def test_training_task_skips_quietly_without_data(enqueued, monkeypatch):
    def too_little(**kwargs):
        raise InsufficientData("3 users")

    monkeypatch.setattr(tasks, "segments_recompute", too_little)
    counts = tasks.segment_users(days=7)
    assert counts == {"skipped": 1}
    assert enqueued == []
    assert not MLModel.objects.exists()


def test_every_schedule_names_a_registered_task():
    from celery import current_app

    for entry in SCHEDULES:
        assert entry["task"] in current_app.tasks, entry["task"]
        assert ("every_seconds" in entry) != ("crontab" in entry)


def test_admin_pages_and_charts_render(admin_client):
    model = MLModelFactory(is_active=True)
    segment = SegmentFactory(model=model)
    segment.snapshots.create(day="2026-01-01", size=10, share=0.2)
    InsightFactory()
    for name in ("mlmodel", "segment", "segmentsnapshot", "featureimpact", "statepattern",
                 "insight"):  # fmt: skip
        response = admin_client.get(reverse(f"admin:insights_{name}_changelist"))
        assert response.status_code == 200, name
    chart = admin_client.get(reverse("admin:insights_mlmodel_chart", args=[model.pk]))
    assert chart.status_code == 200
    assert b"plotly" in chart.content.lower() and segment.name.encode() in chart.content


def test_admin_actions_acknowledge_and_refuse_two_versions_of_one_name(admin_client):
    insight = InsightFactory()
    url = reverse("admin:insights_insight_changelist")
    admin_client.post(url, {"action": "acknowledge", "_selected_action": [insight.pk]})
    insight.refresh_from_db()
    assert insight.status == Insight.Status.ACKNOWLEDGED
    a = MLModelFactory(name="same")
    b = MLModelFactory(name="same", version=2)
    url = reverse("admin:insights_mlmodel_changelist")
    admin_client.post(url, {"action": "activate", "_selected_action": [a.pk, b.pk]})
    assert not MLModel.objects.filter(name="same", is_active=True).exists()
    admin_client.post(url, {"action": "activate", "_selected_action": [b.pk]})
    assert MLModel.objects.get(name="same", is_active=True) == b


def test_generation_through_celery_records_a_job_run():
    from phase3.models import JobRun

    InsightFactory()  # an unrelated existing row must survive generation
    result = tasks.generate_insights.apply().get()
    run = JobRun.objects.get(task_name=tasks.GENERATE)
    assert run.status == JobRun.Status.SUCCESS
    assert run.counts == result and "findings" in result
    assert Insight.objects.count() >= 1


def test_admin_lists_filters_and_shows_why_a_version_was_activated(admin_client):
    from insights.services.registry import mlmodel_register

    def register(features: list[str], score: float) -> MLModel:
        return mlmodel_register(
            name="admin-why", kind="clustering", fitted={}, metrics={"silhouette": score},
            parameters={"features": features}, training_rows=10, holdout_rows=5,
        )  # fmt: skip

    first = register(["a"], 0.6)
    changed = register(["a", "b"], 0.1)
    url = reverse("admin:insights_mlmodel_changelist")
    listed = admin_client.get(url, {"activation_rule__exact": "inputs_changed"})
    assert listed.status_code == 200
    assert list(listed.context["cl"].result_list) == [changed]
    searched = list(admin_client.get(url, {"q": "added b"}).context["cl"].result_list)
    assert changed in searched and first not in searched
    page = admin_client.get(reverse("admin:insights_mlmodel_change", args=[changed.pk]))
    assert page.status_code == 200 and b"added b" in page.content

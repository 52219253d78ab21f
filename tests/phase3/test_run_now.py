"""A schedule run by hand goes where beat sends it: its queue, priority, expiry, arguments."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from phase3.celery import app as celery_app

pytestmark = pytest.mark.django_db

RUN = "/admin/api/phase3/jobs/run"


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, **kw: calls.append((name, kw)))
    return calls


def routed_schedule(**fields) -> PeriodicTask:
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period="minutes")
    values = {
        "name": "routed",
        "task": "phase3.heartbeat",
        "interval": every,
        "args": json.dumps([1]),
        "kwargs": json.dumps({"days": 3}),
        "queue": "bulk",
        "exchange": "jobs",
        "routing_key": "jobs.bulk",
        "priority": 7,
        "expire_seconds": 55,
        "headers": json.dumps({"origin": "ops"}),
        **fields,
    }
    return PeriodicTask.objects.create(**values)


def assert_routed(name: str, options: dict) -> None:
    assert name == "phase3.heartbeat"
    assert options["args"] == [1] and options["kwargs"] == {"days": 3}
    assert options["queue"] == "bulk" and options["priority"] == 7
    assert options["exchange"] == "jobs" and options["routing_key"] == "jobs.bulk"
    assert options["expires"] == 55  # seconds from the send, as beat does
    assert options["headers"]["origin"] == "ops"
    assert options["headers"]["periodic_task_name"] == "routed"


def test_the_api_run_now_sends_the_schedules_options(
    client_with_role, sent, django_capture_on_commit_callbacks
):
    routed_schedule()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_with_role("operator").post(RUN, {"schedule": "routed"}, format="json")
    assert response.status_code == 202
    [(name, options)] = sent
    assert_routed(name, options)


def test_a_schedule_without_routing_goes_to_the_default_queue(
    client_with_role, sent, django_capture_on_commit_callbacks
):
    routed_schedule(
        queue=None,
        exchange=None,
        routing_key=None,
        priority=None,
        expire_seconds=None,
        headers="{}",
    )
    with django_capture_on_commit_callbacks(execute=True):
        client_with_role("operator").post(RUN, {"schedule": "routed"}, format="json")
    [(_, options)] = sent
    assert not {"queue", "exchange", "routing_key", "priority", "expires"} & options.keys()


def test_an_expired_schedule_is_refused_not_silently_dropped(
    client_with_role, sent, django_capture_on_commit_callbacks
):
    routed_schedule(expires=timezone.now() - timedelta(hours=1), expire_seconds=None)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_with_role("operator").post(RUN, {"schedule": "routed"}, format="json")
    assert response.status_code == 400 and "schedule" in response.json()
    assert sent == []


def test_an_absolute_expiry_still_ahead_is_kept(
    client_with_role, sent, django_capture_on_commit_callbacks
):
    until = timezone.now() + timedelta(hours=1)
    routed_schedule(expires=until, expire_seconds=None)
    with django_capture_on_commit_callbacks(execute=True):
        client_with_role("operator").post(RUN, {"schedule": "routed"}, format="json")
    [(_, options)] = sent
    assert options["expires"] == until


def test_the_admin_run_action_sends_the_schedules_options(
    admin_client, sent, django_capture_on_commit_callbacks
):
    task = routed_schedule()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/django_celery_beat/periodictask/",
            {"action": "run_tasks", "_selected_action": [task.pk]},
        )
    [(name, options)] = sent
    assert_routed(name, options)


def test_the_admin_run_action_skips_an_expired_schedule_and_says_so(
    admin_client, sent, django_capture_on_commit_callbacks
):
    expired = routed_schedule(expires=timezone.now() - timedelta(hours=1), expire_seconds=None)
    fine = routed_schedule(name="fine")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/django_celery_beat/periodictask/",
            {"action": "run_tasks", "_selected_action": [expired.pk, fine.pk]},
            follow=True,
        )
    assert [options["headers"]["periodic_task_name"] for _, options in sent] == ["fine"]
    assert any("expired" in str(m) for m in response.context["messages"])

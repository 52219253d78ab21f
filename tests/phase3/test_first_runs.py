"""A schedule beat has never sent runs once at start; the rest are left to beat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from phase3.celery import app as celery_app
from phase3.first_runs import schedules_start_never_run
from phase3.scheduling import schedules_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, **kw: calls.append((name, kw)))
    return calls


def test_every_declared_schedule_runs_once_in_declared_order(
    sent, django_capture_on_commit_callbacks
):
    schedules_sync()
    declared = list(PeriodicTask.objects.order_by("id").values_list("name", "task"))
    with django_capture_on_commit_callbacks(execute=True):
        started = schedules_start_never_run()
    assert started == [name for name, _ in declared]
    assert [name for name, _ in sent] == [task for _, task in declared]
    assert [kw["headers"]["periodic_task_name"] for _, kw in sent] == started
    daily = PeriodicTask.objects.get(task="personalization.recompute_profiles")
    assert daily.last_run_at is not None
    assert timezone.now() - daily.last_run_at < timedelta(minutes=1)


def test_a_second_start_queues_nothing_twice(sent, django_capture_on_commit_callbacks):
    schedules_sync()
    with django_capture_on_commit_callbacks(execute=True):
        first = schedules_start_never_run()
    with django_capture_on_commit_callbacks(execute=True):
        second = schedules_start_never_run()
    assert first and second == []
    assert len(sent) == len(first)


def test_schedules_that_ran_are_off_or_keep_their_own_time_are_left_to_beat(
    sent, django_capture_on_commit_callbacks
):
    daily, _ = CrontabSchedule.objects.get_or_create(minute="0", hour="3")
    clock = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(days=1))
    common = {"task": "phase3.heartbeat", "crontab": daily}
    PeriodicTask.objects.create(name="ran", last_run_at=timezone.now(), **common)
    PeriodicTask.objects.create(name="off", enabled=False, **common)
    PeriodicTask.objects.create(name="once", one_off=True, **common)
    PeriodicTask.objects.create(
        name="expired", expires=timezone.now() - timedelta(minutes=1), **common
    )
    PeriodicTask.objects.create(
        name="clocked", task="phase3.heartbeat", clocked=clock, one_off=True
    )
    PeriodicTask.objects.create(name="new", **common)
    with django_capture_on_commit_callbacks(execute=True):
        started = schedules_start_never_run()
    assert started == ["new"]
    assert [kw["headers"]["periodic_task_name"] for _, kw in sent] == ["new"]
    assert PeriodicTask.objects.get(name="expired").last_run_at is None


def test_a_stamp_does_not_read_as_an_operators_edit(sent, django_capture_on_commit_callbacks):
    schedules_sync()
    before = dict(PeriodicTask.objects.values_list("name", "date_changed"))
    with django_capture_on_commit_callbacks(execute=True):
        schedules_start_never_run()
    assert dict(PeriodicTask.objects.values_list("name", "date_changed")) == before


def test_bootstrap_reports_the_first_runs(sent, django_capture_on_commit_callbacks, capsys):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("bootstrap", "--no-demo")
    out = capsys.readouterr().out
    assert f"First runs:  {len(sent)} schedules" in out
    assert len(sent) == PeriodicTask.objects.filter(enabled=True).count()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("bootstrap", "--no-demo")
    assert "First runs" not in capsys.readouterr().out

"""Runs whose worker died without a redelivery are closed as failed by a periodic sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import shared_task
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from phase3.models import JobRun
from phase3.overview import jobs_summary
from phase3.scheduling import declared_schedules
from phase3.tasks import LOST_RUN_FALLBACK_LIMIT, LOST_RUN_GRACE, job_runs_close_lost

pytestmark = pytest.mark.django_db


@shared_task(name="tests.limited", time_limit=60)
def limited() -> dict:
    return {}


@shared_task(name="tests.default_limit")
def default_limit() -> dict:
    return {}


def running(task_name: str, age: timedelta) -> JobRun:
    return JobRun.objects.create(task_name=task_name, started_at=timezone.now() - age)


def status(run: JobRun) -> str:
    run.refresh_from_db()
    return run.status


def test_a_run_far_past_its_time_limit_is_closed_and_a_recent_one_is_not():
    dead = running("tests.limited", timedelta(seconds=60) + LOST_RUN_GRACE + timedelta(minutes=1))
    alive = running("tests.limited", timedelta(seconds=30))
    assert job_runs_close_lost() == 1
    assert status(dead) == JobRun.Status.FAILED and status(alive) == JobRun.Status.RUNNING
    dead.refresh_from_db()
    assert dead.error.startswith("worker lost") and dead.finished_at is not None


def test_a_task_without_its_own_limit_gets_the_apps_limit(settings):
    from phase3.celery import app

    limit = timedelta(seconds=app.conf.task_time_limit)
    dead = running("tests.default_limit", limit + LOST_RUN_GRACE + timedelta(minutes=1))
    alive = running("tests.default_limit", limit)
    job_runs_close_lost()
    assert status(dead) == JobRun.Status.FAILED and status(alive) == JobRun.Status.RUNNING


def test_an_unknown_task_gets_the_generous_fallback():
    beyond = running("gone.renamed_task", LOST_RUN_FALLBACK_LIMIT + LOST_RUN_GRACE * 2)
    within = running("gone.renamed_task", LOST_RUN_FALLBACK_LIMIT)
    job_runs_close_lost()
    assert status(beyond) == JobRun.Status.FAILED and status(within) == JobRun.Status.RUNNING


def test_finished_runs_are_left_alone():
    old = JobRun.objects.create(
        task_name="tests.limited",
        status=JobRun.Status.SUCCESS,
        started_at=timezone.now() - timedelta(days=1),
    )
    assert job_runs_close_lost() == 0
    assert status(old) == JobRun.Status.SUCCESS


def test_many_tasks_are_closed_with_one_update():
    for name in ("tests.limited", "tests.default_limit", "gone.a", "gone.b"):
        running(name, timedelta(days=2))
    with CaptureQueriesContext(connection) as queries:
        assert job_runs_close_lost() == 4
    updates = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1


def test_the_overview_counts_closed_runs_as_failed():
    running("tests.limited", timedelta(hours=2))
    JobRun.objects.create(task_name="tests.limited", status=JobRun.Status.SUCCESS)
    before = jobs_summary()
    assert before["runs_by_status"].get("running") == 1 and before["success_rate"] == 1.0
    job_runs_close_lost()
    after = jobs_summary()
    assert "running" not in after["runs_by_status"]
    assert after["runs_by_status"]["failed"] == 1 and after["success_rate"] == 0.5


def test_the_sweep_runs_as_a_scheduled_job_and_spares_its_own_run():
    from phase3.tasks import close_lost_runs

    dead = running("tests.limited", timedelta(hours=2))
    assert close_lost_runs.apply().get() == {"closed": 1}
    assert status(dead) == JobRun.Status.FAILED
    own = JobRun.objects.get(task_name="phase3.close_lost_runs")
    assert own.status == JobRun.Status.SUCCESS and own.counts == {"closed": 1}
    assert "phase3.close_lost_runs" in {s["task"] for s in declared_schedules()}

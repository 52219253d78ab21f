"""Runs whose worker died without a redelivery are closed as failed by a periodic sweep."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from celery import shared_task
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from phase3.heartbeat import job_heartbeat_silence
from phase3.models import JobRun
from phase3.overview import jobs_summary
from phase3.scheduling import declared_schedules
from phase3.services import (
    LOST_RUN_ERROR,
    LOST_RUN_FALLBACK_LIMIT,
    LOST_RUN_GRACE,
    LOST_RUN_SILENT_ERROR,
    job_runs_close_lost,
)

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


# Heartbeats: only the prefork pool enforces time limits, so age alone proves nothing.


def beating(task_name: str, age: timedelta, silent_for: timedelta) -> JobRun:
    now = timezone.now()
    return JobRun.objects.create(
        task_name=task_name, started_at=now - age, heartbeat_at=now - silent_for
    )


def test_a_run_past_its_time_limit_that_still_beats_is_left_and_a_silent_one_is_closed():
    # Under the solo, threads or eventlet pools nothing kills a task at its time limit: one
    # two days into a one-minute limit is alive as long as its worker stamps it.
    slow = beating("tests.limited", timedelta(days=2), timedelta(minutes=1))
    # A worker gone quiet is dead however young its run (six hours' fallback limit here).
    silent = beating("gone.long_job", timedelta(minutes=30), job_heartbeat_silence() * 1.5)
    assert job_runs_close_lost() == 1
    assert status(slow) == JobRun.Status.RUNNING and status(silent) == JobRun.Status.FAILED
    silent.refresh_from_db()
    assert silent.error == LOST_RUN_SILENT_ERROR and silent.finished_at is not None


def test_runs_with_and_without_heartbeats_are_closed_by_one_update():
    beating("tests.limited", timedelta(hours=1), timedelta(hours=1))
    running("tests.limited", timedelta(days=2))  # recorded before heartbeats: time limit
    with CaptureQueriesContext(connection) as queries:
        assert job_runs_close_lost() == 2
    updates = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1
    errors = set(JobRun.objects.values_list("error", flat=True))
    assert errors == {LOST_RUN_SILENT_ERROR, LOST_RUN_ERROR}


@shared_task(name="tests.slow_past_its_limit", time_limit=60)
def slow_past_its_limit() -> dict:
    """Pretends to have run for two days under a pool that enforces no time limit."""
    mine = JobRun.objects.filter(task_name="tests.slow_past_its_limit", status="running")
    stamped = timezone.now() - timedelta(hours=1)
    mine.update(started_at=timezone.now() - timedelta(days=2), heartbeat_at=stamped)
    deadline = time.monotonic() + 15
    while mine.filter(heartbeat_at=stamped).exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker's heartbeat thread stamps it meanwhile
    beat = not mine.filter(heartbeat_at=stamped).exists()
    return {"heartbeat": int(beat), "closed": job_runs_close_lost()}


@pytest.mark.django_db(transaction=True)  # the heartbeat thread has a connection of its own
def test_a_slow_task_is_kept_alive_by_its_workers_heartbeat_thread(settings):
    settings.PHASE3_JOB_HEARTBEAT_SECONDS = 0.1
    assert slow_past_its_limit.apply().get() == {"heartbeat": 1, "closed": 0}
    run = JobRun.objects.get(task_name="tests.slow_past_its_limit")
    assert run.status == JobRun.Status.SUCCESS


@shared_task(name="tests.swept_while_alive")
def swept_while_alive() -> dict:
    """Its heartbeat is held up (a database outage, say) long enough for the sweep to close
    it, yet it is alive and finishes."""
    mine = JobRun.objects.filter(task_name="tests.swept_while_alive")
    mine.update(heartbeat_at=timezone.now() - job_heartbeat_silence() * 2)
    closed = job_runs_close_lost()
    return {"closed": closed, "status_meanwhile": mine.get().status}


def test_a_run_that_finishes_after_being_swept_records_its_real_outcome():
    assert swept_while_alive.apply().get() == {"closed": 1, "status_meanwhile": "failed"}
    run = JobRun.objects.get(task_name="tests.swept_while_alive")
    assert (run.status, run.error, run.counts["closed"]) == (JobRun.Status.SUCCESS, "", 1)
    assert run.finished_at is not None and run.duration_ms >= 0


def test_the_heartbeat_stamps_only_runs_still_running():
    from phase3.services import job_runs_heartbeat

    alive = beating("tests.limited", timedelta(minutes=5), timedelta(minutes=5))
    closed = JobRun.objects.create(task_name="tests.limited", status=JobRun.Status.FAILED)
    assert job_runs_heartbeat(run_ids=[alive.pk, closed.pk]) == 1
    alive.refresh_from_db()
    assert timezone.now() - alive.heartbeat_at < timedelta(minutes=1)


def test_every_new_run_starts_with_a_heartbeat():
    limited.apply()
    run = JobRun.objects.get(task_name="tests.limited")
    assert run.heartbeat_at is not None and run.heartbeat_at >= run.started_at

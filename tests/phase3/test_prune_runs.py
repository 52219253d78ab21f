"""Pruning job runs keeps what schedule health reads, whatever its age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from phase3.models import JobRun
from phase3.overview import schedules_summary
from phase3.services import job_runs_prune

pytestmark = pytest.mark.django_db

NOW = datetime(2024, 7, 10, 12, tzinfo=UTC)
RETENTION = timedelta(days=30)


def run(task: str, days_ago: float, status: str = JobRun.Status.SUCCESS) -> JobRun:
    return JobRun.objects.create(
        task_name=task, status=status, started_at=NOW - timedelta(days=days_ago)
    )


def kept(*runs: JobRun) -> list[bool]:
    ids = set(JobRun.objects.values_list("pk", flat=True))
    return [r.pk in ids for r in runs]


def test_a_monthly_schedule_stays_healthy_after_its_success_is_older_than_the_retention():
    # A monthly job (the 1st, 03:00) succeeded on June 1st, 39 days before NOW; July 1st
    # failed once, which is tolerated: it is due again on August 1st.
    monthly = CrontabSchedule.objects.create(
        minute="0", hour="3", day_of_month="1", month_of_year="*", day_of_week="*"
    )
    task = PeriodicTask.objects.create(name="monthly report", task="tests.monthly", crontab=monthly)
    PeriodicTask.objects.filter(pk=task.pk).update(
        date_changed=datetime(2024, 7, 1, 3, 2, tzinfo=UTC),
        last_run_at=datetime(2024, 7, 1, 3, tzinfo=UTC),
    )
    success = JobRun.objects.create(
        task_name="tests.monthly",
        status=JobRun.Status.SUCCESS,
        started_at=datetime(2024, 6, 1, 3, tzinfo=UTC),
    )
    run("tests.monthly", 9.4, JobRun.Status.FAILED)
    before = schedules_summary(now=NOW)["schedules"][0]
    assert before["health"] == "ok" and before["last_success"] == success.started_at

    job_runs_prune(older_than=RETENTION, now=NOW)

    after = schedules_summary(now=NOW)["schedules"][0]
    assert after == before


def test_each_task_keeps_its_latest_run_and_latest_success_and_loses_the_rest():
    old_success = run("tests.a", 60)
    last_success = run("tests.a", 45)
    old_failure = run("tests.a", 50, JobRun.Status.FAILED)
    last_failure = run("tests.a", 40, JobRun.Status.FAILED)
    recent = run("tests.b", 1)
    superseded = run("tests.b", 31)  # older than the retention, b's latest is recent
    assert job_runs_prune(older_than=RETENTION, now=NOW) == 3
    assert kept(old_success, last_success, old_failure, last_failure, recent, superseded) == [
        False,
        True,
        False,
        True,
        True,
        False,
    ]


def test_a_task_that_never_succeeded_keeps_its_first_and_latest_runs():
    # Schedule health counts a never-successful schedule from its first run: keeping only
    # the latest failure would make a job that has failed for months look new ("pending").
    first = run("tests.broken", 90, JobRun.Status.FAILED)
    middle = run("tests.broken", 60, JobRun.Status.FAILED)
    latest = run("tests.broken", 35, JobRun.Status.FAILED)
    job_runs_prune(older_than=RETENTION, now=NOW)
    assert kept(first, middle, latest) == [True, False, True]
    # once it succeeds, its first run no longer matters
    success = run("tests.broken", 32)
    job_runs_prune(older_than=RETENTION, now=NOW)
    assert kept(first, latest, success) == [False, False, True]


def test_recent_runs_are_never_pruned():
    runs = [run("tests.c", d, s) for d in (1, 2, 29) for s in ("success", "failed", "skipped")]
    assert job_runs_prune(older_than=RETENTION, now=NOW) == 0
    assert all(kept(*runs))


def test_pruning_is_one_delete_statement_whatever_the_number_of_tasks():
    for i in range(20):
        for days in (40, 50, 60):
            run(f"tests.many{i}", days)
    with CaptureQueriesContext(connection) as queries:
        assert job_runs_prune(older_than=RETENTION, now=NOW) == 40
    statements = [q["sql"].lstrip().split()[0].upper() for q in queries]
    assert statements.count("DELETE") == 1 and "SELECT" not in statements


def test_the_scheduled_prune_keeps_the_latest_success():
    from phase3.tasks import prune_job_runs

    ancient = JobRun.objects.create(
        task_name="tests.yearly",
        status=JobRun.Status.SUCCESS,
        started_at=datetime.now(UTC) - timedelta(days=300),
    )
    assert prune_job_runs.apply(kwargs={"days": 30}).get() == {"deleted": 0}
    assert kept(ancient) == [True]

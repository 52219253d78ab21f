from __future__ import annotations

import json
import time

import pytest
from celery import shared_task
from celery.exceptions import Retry
from django.db import OperationalError
from django_celery_beat.models import PeriodicTask

from phase3.locks import job_lock
from phase3.models import JobRun
from phase3.scheduling import declared_schedules, schedules_sync

pytestmark = pytest.mark.django_db

CALLS = {"flaky": 0}


@shared_task(name="tests.count_things")
def count_things(n: int) -> dict:
    return {"things": n}


@shared_task(name="tests.explode")
def explode() -> dict:
    raise ValueError("boom")


@shared_task(name="tests.flaky")
def flaky() -> dict:
    CALLS["flaky"] += 1
    if CALLS["flaky"] < 3:
        raise OperationalError("database went away")
    return {"attempts": CALLS["flaky"]}


def test_a_task_run_is_recorded_with_its_counts():
    count_things.apply(args=[7])
    run = JobRun.objects.get(task_name="tests.count_things")
    assert run.status == JobRun.Status.SUCCESS
    assert run.counts == {"things": 7}
    assert run.args == [7]
    assert run.finished_at >= run.started_at and run.duration_ms >= 0


def test_a_failure_is_recorded_with_its_error():
    with pytest.raises(ValueError):
        explode.apply(throw=True)
    run = JobRun.objects.get(task_name="tests.explode")
    assert run.status == JobRun.Status.FAILED
    assert "boom" in run.error


def test_transient_errors_become_a_retry_with_backoff():
    CALLS["flaky"] = 0
    with pytest.raises(Retry) as raised:  # eager mode reports the retry instead of sleeping
        flaky.apply()
    assert isinstance(raised.value.exc, OperationalError)
    runs = JobRun.objects.filter(task_name="tests.flaky")
    assert list(runs.values_list("status", flat=True)) == ["retrying"]


def test_a_non_transient_error_is_not_retried():
    with pytest.raises(ValueError):
        explode.apply()
    assert JobRun.objects.filter(task_name="tests.explode", status="retrying").count() == 0


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_a_job_never_overlaps_with_itself(backend, settings, request):
    if backend == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    key = count_things.lock_key((5,), {})
    with job_lock(key, timeout=30) as held:
        assert held
        with job_lock(key, timeout=30) as second:
            assert not second
        count_things.apply(args=[5])
    assert JobRun.objects.get(task_name="tests.count_things").status == JobRun.Status.SKIPPED
    count_things.apply(args=[5])  # released: runs
    assert JobRun.objects.filter(task_name="tests.count_things", status="success").count() == 1


def test_different_arguments_do_not_block_each_other():
    with job_lock(count_things.lock_key((1,), {}), timeout=30):
        count_things.apply(args=[2])
    assert JobRun.objects.get(task_name="tests.count_things").status == JobRun.Status.SUCCESS


def test_sync_schedules_adds_missing_and_keeps_operator_edits():
    first = schedules_sync()
    declared = {s["name"] for s in declared_schedules()}
    assert set(first.created) == declared
    edited = PeriodicTask.objects.get(name="phase3: heartbeat")
    edited.enabled = False
    edited.kwargs = json.dumps({"note": "operator"})
    edited.save()
    PeriodicTask.objects.filter(name="phase3: prune job runs").delete()
    second = schedules_sync()
    assert second.created == ["phase3: prune job runs"]
    edited.refresh_from_db()
    assert edited.enabled is False and json.loads(edited.kwargs) == {"note": "operator"}


def test_every_declared_schedule_names_a_registered_task():
    from phase3.celery import app

    app.loader.import_default_modules()
    registered = set(app.tasks)
    missing = [s["task"] for s in declared_schedules() if s["task"] not in registered]
    assert not missing


def test_operators_run_a_schedule_now(
    client_with_role, django_capture_on_commit_callbacks, monkeypatch
):
    schedules_sync()
    sent = []
    from phase3.celery import app

    monkeypatch.setattr(app, "send_task", lambda name, **kw: sent.append(name))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_with_role("operator").post(
            "/admin/api/phase3/jobs/run", {"schedule": "phase3: heartbeat"}, format="json"
        )
    assert response.status_code == 202
    assert sent == ["phase3.heartbeat"]
    bad = client_with_role("operator").post(
        "/admin/api/phase3/jobs/run", {"schedule": "nope"}, format="json"
    )
    assert bad.status_code == 400 and "schedule" in bad.json()


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_a_message_redelivered_after_its_worker_died_runs_and_closes_the_dead_run(
    backend, settings, request
):
    # The worker was killed mid-task: its lock outlives it (for the task's time limit) and
    # its run row says "running". The broker redelivers the same message, same task id.
    if backend == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    key = count_things.lock_key((5,), {})
    with job_lock(key, timeout=60, owner="task-dead") as held:
        assert held
        dead = JobRun.objects.create(task_name="tests.count_things", task_id="task-dead")
        assert count_things.apply(args=[5], task_id="another-task").get() == {"skipped": 1}
        assert count_things.apply(args=[5], task_id="task-dead").get() == {"things": 5}
    dead.refresh_from_db()
    assert (dead.status, dead.error) == (JobRun.Status.FAILED, "worker lost")


@pytest.mark.django_db
def test_a_bad_job_status_names_the_valid_ones(client_with_role):
    from phase3.models import JobRun
    from tests.choices import assert_names_valid_choices

    response = client_with_role("viewer").get("/admin/api/phase3/jobs", {"status": "bogus"})
    assert_names_valid_choices(response, "status", "bogus", JobRun.Status.values)


@pytest.fixture(params=["database", "redis"])
def lock_backend(request, settings) -> str:
    settings.REDIS_URL = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    return request.param


def test_a_renewed_lock_outlives_its_first_expiry_and_only_its_owner_renews(lock_backend):
    from phase3.locks import job_lock_renew

    key = f"tests.renew.{lock_backend}"
    with job_lock(key, timeout=0.5, owner="slow-task") as held:
        assert held
        assert not job_lock_renew(key, owner="someone-else", timeout=60)
        assert job_lock_renew(key, owner="slow-task", timeout=60)
        time.sleep(0.7)  # past the first expiry: still held, the renewal moved it
        with job_lock(key, timeout=60, owner="next-run") as second:
            assert not second
    with job_lock(key, timeout=0.5, owner="slow-task") as held:
        assert held
        time.sleep(0.7)  # not renewed: it expires, and renewing then does not steal it back
        with job_lock(key, timeout=60, owner="next-run") as second:
            assert second
            assert not job_lock_renew(key, owner="slow-task", timeout=60)


@shared_task(name="tests.outlives_its_lock", time_limit=60)
def outlives_its_lock() -> dict:
    """Runs past its lock's expiry under a pool that enforces no time limit: the heartbeat
    renews the lock, so the next run beat sends finds it held and skips."""
    from phase3.heartbeat import job_heartbeat_now
    from phase3.locks import job_lock_renew

    if outlives_its_lock.request.id != "task-slow":
        return {"ran": 1}  # the overlapping run, had the lock expired
    key = outlives_its_lock.lock_key((), {})
    job_lock_renew(key, owner="task-slow", timeout=0.3)  # as if its time limit were nearly up
    job_heartbeat_now()
    time.sleep(0.5)
    count_things.apply(args=[1])  # an unrelated job is not blocked meanwhile
    overlapping = outlives_its_lock.apply(task_id="task-next").get()
    return {"next": overlapping}


def test_the_heartbeat_renews_the_lock_of_a_run_past_its_limit(lock_backend):
    result = outlives_its_lock.apply(task_id="task-slow").get()
    assert result == {"next": {"skipped": 1}}
    runs = dict(
        JobRun.objects.filter(task_name="tests.outlives_its_lock").values_list("task_id", "status")
    )
    assert runs == {"task-slow": JobRun.Status.SUCCESS, "task-next": JobRun.Status.SKIPPED}

"""The base class of every Celery task in the project, and the project's own jobs.

Apps use plain ``@shared_task(name=...)``; the Celery app's ``task_cls`` makes this
class their base, so locking, job records, late acks, time limits and retries are
never forgotten. A task returns a dict of counts, which its ``JobRun`` keeps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from collections import defaultdict
from datetime import datetime, timedelta

from celery import Task, current_app, shared_task
from celery.exceptions import Retry
from django.db import InterfaceError, OperationalError
from django.db.models import Q
from django.utils import timezone

from .locks import job_lock
from .models import JobRun
from .services import job_runs_prune

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)

#: How long after its task's hard time limit a "running" run is surely dead: the limit kills
#: the task, so this only covers clocks that differ between workers and a busy sweep.
LOST_RUN_GRACE = timedelta(minutes=15)
#: The limit assumed for a task the registry does not know (renamed, removed, its app not
#: installed here) or that has no limit at all: long enough for any job of this project.
LOST_RUN_FALLBACK_LIMIT = timedelta(hours=6)
LOST_RUN_ERROR = "worker lost: no result after the task's time limit"


class JobTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 5
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 5
    #: set ``lock=False`` on a task that may safely run concurrently with itself
    lock = True

    def lock_key(self, args, kwargs) -> str:
        payload = json.dumps([args, kwargs], sort_keys=True, default=str)
        return f"{self.name}:{hashlib.sha1(payload.encode()).hexdigest()[:16]}"

    def __call__(self, *args, **kwargs):
        if self.request.called_directly:
            # A plain function call (tests, shell): no job record, no lock.
            return self.run(*args, **kwargs)
        run = JobRun.objects.create(
            task_name=self.name,
            task_id=self.request.id or "",
            args=_jsonable(list(args)),
            kwargs=_jsonable(kwargs),
            worker=self.request.hostname or socket.gethostname(),
        )
        timeout = float(self.time_limit or self.app.conf.task_time_limit or 3600)
        started = time.perf_counter()
        if not self.lock:
            return self._execute(run, started, args, kwargs)
        key = self.lock_key(args, kwargs)
        with job_lock(key, timeout=timeout, owner=self.request.id or None) as acquired:
            if not acquired:
                _finish(run, started, JobRun.Status.SKIPPED, error="already running")
                return {"skipped": 1}
            _mark_lost(run)
            return self._execute(run, started, args, kwargs)

    def _execute(self, run: JobRun, started: float, args, kwargs):
        try:
            result = self.run(*args, **kwargs)
        except Retry as exc:  # autoretry_for turned a transient error into a retry
            _finish(run, started, JobRun.Status.RETRYING, error=str(exc))
            raise
        except Exception as exc:
            _finish(run, started, JobRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        counts = result if isinstance(result, dict) else {}
        _finish(run, started, JobRun.Status.SUCCESS, counts=counts)
        return result


def _mark_lost(run: JobRun) -> None:
    """Earlier runs of this very message still "running" died with their worker: say so."""
    if run.task_id:
        JobRun.objects.filter(task_id=run.task_id, status=JobRun.Status.RUNNING).exclude(
            pk=run.pk
        ).update(status=JobRun.Status.FAILED, finished_at=timezone.now(), error="worker lost")


def job_runs_close_lost(*, now: datetime | None = None) -> int:
    """Close as failed every run still "running" well past its task's hard time limit.

    `_mark_lost` closes a dead worker's run when the broker redelivers its message; this
    closes the rest (a message acked before the worker died, one the broker dropped, a run
    killed by its own hard limit), which otherwise stay "running" forever and never count
    as failures. A run within its limit may still be alive and is left alone. One UPDATE,
    so a run that finishes meanwhile keeps its own result.
    """
    now = now or timezone.now()
    running = JobRun.objects.filter(status=JobRun.Status.RUNNING)
    names = set(running.order_by().values_list("task_name", flat=True).distinct())
    if not names:
        return 0
    app = current_app
    app.loader.import_default_modules()  # a beat-only or web process has not imported them
    by_limit: dict[timedelta, list[str]] = defaultdict(list)
    for name in names:
        by_limit[_hard_time_limit(app, name)].append(name)
    lost = Q()
    for limit, group in by_limit.items():
        lost |= Q(task_name__in=group, started_at__lt=now - limit - LOST_RUN_GRACE)
    return running.filter(lost).update(
        status=JobRun.Status.FAILED, finished_at=now, error=LOST_RUN_ERROR
    )


def _hard_time_limit(app, task_name: str) -> timedelta:
    """The limit a worker kills `task_name` at: its own, else the app's, else the fallback."""
    task = app.tasks.get(task_name)
    seconds = task is not None and (task.time_limit or app.conf.task_time_limit)
    return timedelta(seconds=seconds) if seconds else LOST_RUN_FALLBACK_LIMIT


def _finish(run: JobRun, started: float, status: str, *, error: str = "", counts=None) -> None:
    run.status = status
    run.finished_at = timezone.now()
    run.duration_ms = (time.perf_counter() - started) * 1000.0
    run.error = error[:5000]
    run.counts = _jsonable(counts or {})
    run.save(update_fields=["status", "finished_at", "duration_ms", "error", "counts"])


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


@shared_task(name="phase3.prune_job_runs")
def prune_job_runs(days: int = 30) -> dict:
    """Job records are for recent operations; a month is enough to see patterns, and what
    schedule health still reads is kept whatever its age (see `job_runs_prune`)."""
    return {"deleted": job_runs_prune(older_than=timedelta(days=days))}


@shared_task(name="phase3.close_lost_runs")
def close_lost_runs() -> dict:
    """Runs whose worker died unseen would stay "running" forever: close them as failed."""
    return {"closed": job_runs_close_lost()}


@shared_task(name="phase3.heartbeat", lock=False)
def heartbeat() -> dict:
    """A tiny scheduled job whose JobRun rows show that beat and a worker are alive."""
    return {"ok": 1}


@shared_task(name="phase3.demo_tick")
def demo_tick() -> dict:
    """Keep a demo world's metrics flowing up to now (no-op without a seeded demo)."""
    from telemetry.demo import demo_extend

    return {"samples": demo_extend()}

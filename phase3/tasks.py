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
import uuid
from datetime import timedelta

from celery import Task, shared_task
from celery.exceptions import Retry
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from .heartbeat import beating, renewing
from .locks import job_lock
from .models import JobRun
from .services import job_runs_close_lost, job_runs_prune

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


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
        now = timezone.now()
        run = JobRun.objects.create(
            task_name=self.name,
            task_id=self.request.id or "",
            args=_jsonable(list(args)),
            kwargs=_jsonable(kwargs),
            worker=self.request.hostname or socket.gethostname(),
            started_at=now,
            heartbeat_at=now,
        )
        with beating(run.pk):  # the lost-run sweep leaves a run alone while it beats
            return self._locked(run, args, kwargs)

    def _locked(self, run: JobRun, args, kwargs):
        timeout = float(self.time_limit or self.app.conf.task_time_limit or 3600)
        started = time.perf_counter()
        if not self.lock:
            return self._execute(run, started, args, kwargs)
        key = self.lock_key(args, kwargs)
        owner = self.request.id or uuid.uuid4().hex
        with job_lock(key, timeout=timeout, owner=owner) as acquired:
            if not acquired:
                _finish(run, started, JobRun.Status.SKIPPED, error="already running")
                return {"skipped": 1}
            _mark_lost(run)
            with renewing(run.pk, key, owner, timeout):  # held for as long as the run beats
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


def _finish(run: JobRun, started: float, status: str, *, error: str = "", counts=None) -> None:
    """Record how the run ended, over whatever the row says: a run the lost-run sweep closed
    while it was in fact alive (its heartbeat held up) gets its real outcome, not "lost"."""
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

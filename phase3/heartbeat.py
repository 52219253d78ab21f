"""Heartbeats of the job runs a worker process is executing.

The lost-run sweep (`phase3.services.job_runs_close_lost`) must tell a dead worker's run
from a slow one. Time limits cannot: only Celery's prefork pool enforces them, so under
the solo, threads, eventlet or gevent pools a task past its limit may well be alive. So,
as cron monitors do (Sentry's check-ins), the worker says so: one daemon thread per
process stamps ``JobRun.heartbeat_at`` on every run it is executing, once a
``PHASE3_JOB_HEARTBEAT_SECONDS`` (60 by default), in one UPDATE. A killed worker (or a
prefork child killed by its hard time limit) stops beating with it, and the sweep closes
its runs once their heartbeat is `job_heartbeat_silence` old.

The same beat renews the run's non-overlap lock (`phase3.locks.job_lock_renew`): the lock
expires a time limit after its last renewal, so a slow task under a pool that enforces no
limit keeps it, and a dead worker's lock still expires.

A green pool (eventlet, gevent) runs this thread as a greenlet: a task that computes for
minutes without yielding starves it, as it starves the worker's broker heartbeats.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

#: A run's heartbeat may be this many intervals late before the sweep calls its worker dead
#: (a busy database, a long garbage collection, clocks that differ between hosts).
MISSED_BEATS = 10
#: The least silence that counts as a dead worker, whatever the interval.
MIN_SILENCE = timedelta(minutes=10)


def job_heartbeat_interval() -> float:
    """Seconds between two heartbeats of a running job."""
    return float(getattr(settings, "PHASE3_JOB_HEARTBEAT_SECONDS", 60))


def job_heartbeat_silence() -> timedelta:
    """How old a running job's heartbeat may be before its worker is taken for dead."""
    return max(MIN_SILENCE, timedelta(seconds=job_heartbeat_interval() * MISSED_BEATS))


class _Beater:
    """The process's set of executing runs, and the thread that stamps them."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also in a forked child (prefork pool): the parent's thread did not come along, and
        # its lock may have been held at the moment of the fork.
        self._lock = threading.Lock()
        self._runs: dict[int, int] = {}  # run id -> how many nested `beating` hold it
        self._locks: dict[int, tuple[str, str, float]] = {}  # run id -> (key, owner, timeout)
        self._thread: threading.Thread | None = None

    def add(self, run_id: int) -> None:
        with self._lock:
            self._runs[run_id] = self._runs.get(run_id, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="phase3-job-heartbeat", daemon=True
                )
                self._thread.start()

    def discard(self, run_id: int) -> None:
        with self._lock:
            left = self._runs.get(run_id, 0) - 1
            if left > 0:
                self._runs[run_id] = left
            else:
                self._runs.pop(run_id, None)
                self._locks.pop(run_id, None)

    def hold_lock(self, run_id: int, key: str, owner: str, timeout: float) -> None:
        with self._lock:
            if run_id in self._runs:
                self._locks[run_id] = (key, owner, timeout)

    def release_lock(self, run_id: int) -> None:
        with self._lock:
            self._locks.pop(run_id, None)

    def running(self) -> list[int]:
        with self._lock:
            return list(self._runs)

    def held_locks(self) -> list[tuple[str, str, float]]:
        with self._lock:
            return list(self._locks.values())

    def _loop(self) -> None:
        # Wakes every second at most and beats once an interval has passed, so a changed
        # interval applies within a second rather than after the old one.
        tick = threading.Event()  # never set: the thread lives as long as its process
        last = time.monotonic()
        while True:
            interval = job_heartbeat_interval()
            tick.wait(min(1.0, interval))
            if time.monotonic() - last >= interval:
                last = time.monotonic()
                self.beat()

    def beat(self) -> int:
        """Stamp every run this process is executing; never raises (the thread must live)."""
        from .locks import job_lock_renew
        from .services import job_runs_heartbeat

        ids = self.running()
        if not ids:
            return 0  # idle: not even a database connection
        try:
            for key, owner, timeout in self.held_locks():
                try:
                    job_lock_renew(key, owner=owner, timeout=timeout)
                except Exception:  # Redis is down: the lock keeps its last expiry
                    logger.warning("job lock %s not renewed", key, exc_info=True)
            return job_runs_heartbeat(run_ids=ids)
        except Exception:  # the database is down: the next beat tries again
            logger.warning("job heartbeat failed for runs %s", ids, exc_info=True)
            return 0
        finally:
            if threading.current_thread() is self._thread:
                connections.close_all()  # this thread's own; none is left open between beats


_beater = _Beater()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_beater._reset)


@contextlib.contextmanager
def beating(run_id: int) -> Iterator[None]:
    """Heartbeat `run_id` while the block runs (the task's body)."""
    _beater.add(run_id)
    try:
        yield
    finally:
        _beater.discard(run_id)


@contextlib.contextmanager
def renewing(run_id: int, key: str, owner: str, timeout: float) -> Iterator[None]:
    """Renew `owner`'s lock on `key` with each heartbeat of `run_id` while the block runs."""
    _beater.hold_lock(run_id, key, owner, timeout)
    try:
        yield
    finally:
        _beater.release_lock(run_id)


def job_heartbeat_now() -> int:
    """Stamp this process's executing runs at once (tests, and a worker about to block)."""
    return _beater.beat()

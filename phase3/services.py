"""Writers of the project's own records: job runs.

Tasks in `phase3.tasks` stay thin and call these; every function is one set-based
statement, so it stays fast with millions of ``JobRun`` rows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from celery import current_app
from django.db import connection
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from .heartbeat import job_heartbeat_silence
from .models import JobRun

#: How long after its task's hard time limit a "running" run without heartbeats (recorded
#: before they existed) is surely dead: the limit kills the task, so this only covers
#: clocks that differ between workers and a busy sweep.
LOST_RUN_GRACE = timedelta(minutes=15)
#: The limit assumed for a task the registry does not know (renamed, removed, its app not
#: installed here) or that has no limit at all: long enough for any job of this project.
LOST_RUN_FALLBACK_LIMIT = timedelta(hours=6)
LOST_RUN_ERROR = "worker lost: no result after the task's time limit"
LOST_RUN_SILENT_ERROR = "worker lost: its heartbeat stopped"

#: How long every job run is kept; older ones go unless schedule health still reads them.
JOB_RUN_RETENTION = timedelta(days=30)


def job_runs_prune(
    *, older_than: timedelta = JOB_RUN_RETENTION, now: datetime | None = None
) -> int:
    """Delete runs older than `older_than`, keeping what schedule health reads, per task.

    Schedule health (`phase3.overview.schedules_summary`) judges a schedule by its task's
    last success, and a task that never succeeded by its first run. A plain age cut deleted
    those for any schedule slower than half the retention (a monthly job lost its success
    before its second due time and read as stale). So, whatever their age, each task keeps
    its latest run of any outcome, its latest success, and while it has never succeeded
    its first run: at most three rows per task name beyond the retention.

    One DELETE (PostgreSQL and SQLite alike): the rows to keep are found per task name
    among the names old rows carry, each with one probe of the ``(task_name, -started_at)``
    indexes, and the old rows are deleted unless among them (a hashed set). Per-row
    correlated subqueries took 146 s for 1.7 million old rows; this is the plain delete's
    cost plus one pass over the old rows' names.
    """
    cutoff = (now or timezone.now()) - older_than
    table = connection.ops.quote_name(JobRun._meta.db_table)
    sql = f"""
        DELETE FROM {table}
        WHERE started_at < %(cutoff)s AND id NOT IN (
            WITH names AS (
                SELECT DISTINCT task_name FROM {table} WHERE started_at < %(cutoff)s
            ),
            keep AS (
                SELECT (SELECT r.id FROM {table} r WHERE r.task_name = n.task_name
                        ORDER BY r.started_at DESC LIMIT 1) AS id
                FROM names n
                UNION ALL
                SELECT (SELECT r.id FROM {table} r WHERE r.task_name = n.task_name
                        AND r.status = %(success)s ORDER BY r.started_at DESC LIMIT 1)
                FROM names n
                UNION ALL
                SELECT (SELECT r.id FROM {table} r WHERE r.task_name = n.task_name
                        ORDER BY r.started_at ASC LIMIT 1)
                FROM names n
                WHERE NOT EXISTS (SELECT 1 FROM {table} r WHERE r.task_name = n.task_name
                                  AND r.status = %(success)s)
            )
            SELECT id FROM keep WHERE id IS NOT NULL
        )
    """
    params = {
        "cutoff": connection.ops.adapt_datetimefield_value(cutoff),
        "success": JobRun.Status.SUCCESS.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def job_runs_heartbeat(*, run_ids: list[int], now: datetime | None = None) -> int:
    """Stamp the runs a worker process is executing as alive (see `phase3.heartbeat`).

    Only runs still "running": one the sweep has closed stays closed until its own end
    records the real outcome.
    """
    return JobRun.objects.filter(pk__in=run_ids, status=JobRun.Status.RUNNING).update(
        heartbeat_at=now or timezone.now()
    )


def job_runs_close_lost(*, now: datetime | None = None) -> int:
    """Close as failed every run still "running" whose worker is gone.

    `_mark_lost` in `phase3.tasks` closes a dead worker's run when the broker redelivers
    its message; this closes the rest (a message acked before the worker died, one the
    broker dropped, a run killed by its own hard limit), which otherwise stay "running"
    forever and never count as failures.

    A run is lost when its heartbeat is older than `job_heartbeat_silence` (ten minutes):
    its worker process stopped. Age alone proves nothing, since only the prefork pool
    enforces time limits: under the solo, threads or green pools a task hours past its
    limit is alive and still beating, and is left alone. A run without heartbeats
    (recorded by a worker from before them, during a rolling upgrade) is judged as it was:
    lost 15 minutes past its task's hard time limit.

    One UPDATE: a run that finishes meanwhile keeps its own result, and one that finishes
    after being closed records its real outcome over this one (`JobTask` saves it).
    """
    now = now or timezone.now()
    running = JobRun.objects.filter(status=JobRun.Status.RUNNING)
    lost = Q(heartbeat_at__lt=now - job_heartbeat_silence())
    names = set(
        running.filter(heartbeat_at__isnull=True)
        .order_by()
        .values_list("task_name", flat=True)
        .distinct()
    )
    if names:
        app = current_app
        app.loader.import_default_modules()  # a beat-only or web process has not imported them
        by_limit: dict[timedelta, list[str]] = defaultdict(list)
        for name in names:
            by_limit[_hard_time_limit(app, name)].append(name)
        for limit, group in by_limit.items():
            lost |= Q(
                heartbeat_at__isnull=True,
                task_name__in=group,
                started_at__lt=now - limit - LOST_RUN_GRACE,
            )
    return running.filter(lost).update(
        status=JobRun.Status.FAILED,
        finished_at=now,
        error=Case(
            When(heartbeat_at__isnull=True, then=Value(LOST_RUN_ERROR)),
            default=Value(LOST_RUN_SILENT_ERROR),
        ),
    )


def _hard_time_limit(app, task_name: str) -> timedelta:
    """The limit a worker kills `task_name` at: its own, else the app's, else the fallback."""
    task = app.tasks.get(task_name)
    seconds = task is not None and (task.time_limit or app.conf.task_time_limit)
    return timedelta(seconds=seconds) if seconds else LOST_RUN_FALLBACK_LIMIT

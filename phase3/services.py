"""Writers of the project's own records: job runs.

Tasks in `phase3.tasks` stay thin and call these; every function is one set-based
statement, so it stays fast with millions of ``JobRun`` rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from .models import JobRun

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

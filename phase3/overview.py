"""The overview: what exists now, every figure computed from the database.

Each system contributes ``<app>.selectors.overview_section()``; a system whose
section fails is reported as an error instead of taking the whole page down.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.utils.time import remaining
from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.selectors import overview_section as telemetry_section

from .deployment import deployment_summary
from .models import JobRun

logger = logging.getLogger(__name__)


def jobs_summary(*, hours: int = 24) -> dict:
    since = timezone.now() - timedelta(hours=hours)
    recent = JobRun.objects.filter(started_at__gte=since)
    by_status = dict(recent.values_list("status").annotate(n=Count("id")).order_by())
    finished = sum(n for s, n in by_status.items() if s in ("success", "failed"))
    latest = [
        {
            "task": r.task_name,
            "status": r.status,
            "started_at": r.started_at,
            "duration_ms": r.duration_ms,
            "counts": r.counts,
        }
        for r in JobRun.objects.order_by("-started_at")[:10]
    ]
    return {
        "window_hours": hours,
        "runs_by_status": by_status,
        "success_rate": (by_status.get("success", 0) / finished) if finished else None,
        "latest": latest,
    }


#: How late a run may start after its due time (queue wait, a busy worker) and still count
#: as on time; never more than the schedule's own period, so a one-minute job is judged
#: within minutes as before.
GRACE = timedelta(minutes=5)
#: Crontab due times are on the wall clock while runs are stamped by the worker's clock: a
#: success this much before a due time is the run for that due time.
CLOCK_SKEW = timedelta(seconds=30)
#: django-celery-beat saves a row a few minutes after sending its task, which bumps
#: ``date_changed``. A change further than this from the last send was someone else's:
#: creating, enabling or editing the schedule.
BEAT_SAVE_LAG = timedelta(minutes=10)
#: Due times in a row that pass without a success before a schedule is stale: one missed or
#: failed run is tolerated, the second is not.
MISSES_TO_STALE = 2


@dataclass(frozen=True)
class ScheduleHealth:
    """``state`` is ok, pending (never succeeded, nothing overdue), stale, disabled or
    unknown; ``expected_by`` is when the schedule turns stale without a success."""

    state: str
    expected_by: datetime | None = None
    period: timedelta | None = None

    @property
    def healthy(self) -> bool | None:
        return None if self.state == "unknown" else self.state in ("ok", "pending")


def schedule_health(
    task: PeriodicTask,
    *,
    last_success: datetime | None,
    first_run: datetime | None = None,
    now: datetime,
) -> ScheduleHealth:
    """Whether `task` has succeeded as often as its own schedule says it should.

    Its due times are counted from a reference: its last success, or a later creation,
    enabling, edit or start time (a schedule switched on after its last due time owes
    nothing yet). A task that never succeeded counts from the first sign it was on: its
    first recorded run, or beat's last send. It is stale once the second due time after the
    reference (plus grace) has passed: with a period of p, a success within 2p + grace, as
    before, but p is the schedule's real one (an hourly crontab is not given two days, a
    weekly one is not stale six days out of seven) and crontabs are read in their time zone.
    """
    if not task.enabled:
        return ScheduleHealth("disabled")
    if not (task.interval_id or task.crontab_id or task.clocked_id):
        return ScheduleHealth("unknown")  # solar: needs ephem and a place; not judged
    try:
        return _judge(task, last_success, first_run, now)
    except Exception:  # a crontab no date matches, a broken row: not worth the page
        logger.exception("cannot judge the health of schedule %s", task.name)
        return ScheduleHealth("unknown")


def _judge(
    task: PeriodicTask, last_success: datetime | None, first_run: datetime | None, now: datetime
) -> ScheduleHealth:
    since = _changed_by_operator(task)
    wall_clock = bool(task.crontab_id or task.clocked_id)
    reached = last_success + CLOCK_SKEW if last_success and wall_clock else last_success
    starts = [t for t in (since, task.start_time) if t]
    if _one_run_done(task, reached, starts):
        return ScheduleHealth("ok")
    reference = max([*starts, *([reached] if reached else [])], default=None)
    if reference is None:  # never succeeded, and beat has saved the row since it was made
        reference = min(t for t in (first_run, task.last_run_at) if t) - GRACE
    state = "ok" if last_success else "pending"
    if task.clocked_id:
        due = max(task.clocked.clocked_time, reference)
        return _verdict(state, due + GRACE, None, now)
    if task.one_off:
        return _verdict(state, _next_due(task, reference) + GRACE, None, now)
    dues = [reference]
    for _ in range(MISSES_TO_STALE):
        dues.append(_next_due(task, dues[-1]))
    period = dues[-1] - dues[-2]
    return _verdict(state, dues[-1] + min(GRACE, period), period, now)


def _one_run_done(task: PeriodicTask, reached: datetime | None, starts: list) -> bool:
    """A one-off (or clocked) schedule expects a single run; after it beat switches it off."""
    if not (task.one_off or task.clocked_id) or reached is None:
        return False
    if starts and reached < max(starts):
        return False
    return not task.clocked_id or reached >= task.clocked.clocked_time


def _verdict(state: str, expected_by: datetime, period: timedelta | None, now: datetime):
    return ScheduleHealth("stale" if now > expected_by else state, expected_by, period)


def _changed_by_operator(task: PeriodicTask) -> datetime | None:
    """When the row was last created, enabled or edited, if its change time says so."""
    changed = task.date_changed
    if changed is None:
        return None
    if task.last_run_at is None or changed - task.last_run_at > BEAT_SAVE_LAG:
        return changed
    return None


def _next_due(task: PeriodicTask, after: datetime) -> datetime:
    """The first time after `after` at which beat sends the task."""
    if task.interval_id:
        return after + task.interval.schedule.run_every
    schedule = task.crontab.schedule  # celery's crontab, in the row's time zone
    start, delta, _ = schedule.remaining_delta(after)
    return after + remaining(start, delta, now=after)


def schedules_summary(*, now: datetime | None = None) -> dict:
    """Each schedule's health (see `schedule_health`) and how many are stale."""
    now = now or timezone.now()
    # One index probe per schedule (the partial index of successes, and the task's index
    # read from its oldest end) rather than aggregates over every recorded run: kept runs
    # reach back as far as a schedule's period, and a GROUP BY over two million rows took
    # a second per overview.
    runs = JobRun.objects.filter(task_name=OuterRef("task")).order_by()
    tasks = list(
        PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked").annotate(
            last_success=Subquery(
                runs.filter(status=JobRun.Status.SUCCESS)
                .order_by("-started_at")
                .values("started_at")[:1]
            ),
            first_run=Subquery(runs.order_by("started_at").values("started_at")[:1]),
        )
    )
    last_ok = {t.task: t.last_success for t in tasks if t.last_success}
    first_run = {t.task: t.first_run for t in tasks if t.first_run}
    rows = []
    for task in tasks:
        last = last_ok.get(task.task)
        health = schedule_health(
            task, last_success=last, first_run=first_run.get(task.task), now=now
        )
        rows.append(
            {
                "name": task.name,
                "task": task.task,
                "enabled": task.enabled,
                "last_success": last,
                "healthy": health.healthy,
                "health": health.state,
                "expected_by": health.expected_by,
                "period_seconds": health.period.total_seconds() if health.period else None,
            }
        )
    return {
        "count": len(rows),
        "enabled": sum(r["enabled"] for r in rows),
        "stale": sum(r["health"] == "stale" for r in rows),
        "unknown": sum(r["health"] == "unknown" for r in rows),
        "schedules": rows,
    }


def system_sections() -> dict:
    sections = {}
    for label in settings.PHASE3_SYSTEMS:
        try:
            selectors = importlib.import_module(f"{label}.selectors")
        except ModuleNotFoundError:
            continue
        section = getattr(selectors, "overview_section", None)
        if section is None:
            continue
        sections[label] = _guarded(label, section)
    return sections


def _guarded(label: str, section) -> dict:
    """A section, or its error: one broken part must not take down the health page, which
    is when operators need it most."""
    try:
        return section()
    except Exception as exc:
        logger.exception("overview section %s failed", label)
        return {"error": f"{type(exc).__name__}: {exc}"}


class OverviewView(APIView):
    """Health of the whole product and of Phase 3 itself, in one read."""

    @extend_schema(responses=dict)
    def get(self, request):
        return Response(
            {
                "generated_at": timezone.now(),
                "deployment": deployment_summary(host=request.get_host()),
                "telemetry": _guarded("telemetry", telemetry_section),
                "jobs": _guarded("jobs", jobs_summary),
                "schedules": _guarded("schedules", schedules_summary),
                **system_sections(),
            }
        )

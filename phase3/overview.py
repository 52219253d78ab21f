"""The overview: what exists now, every figure computed from the database.

Each system contributes ``<app>.selectors.overview_section()``; a system whose
section fails is reported as an error instead of taking the whole page down.
"""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.selectors import overview_section as telemetry_section

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


def schedules_summary() -> dict:
    """A schedule is healthy when its task ran successfully within about two periods."""
    tasks = PeriodicTask.objects.select_related("interval", "crontab")
    last_ok = dict(
        JobRun.objects.filter(status=JobRun.Status.SUCCESS)
        .values_list("task_name")
        .annotate(last=Max("started_at"))
        .order_by()
    )
    now = timezone.now()
    rows, stale = [], 0
    for task in tasks:
        period = task.interval.schedule.run_every if task.interval else timedelta(days=1)
        last = last_ok.get(task.task)
        healthy = bool(task.enabled and last and now - last <= 2 * period + timedelta(minutes=1))
        stale += int(task.enabled and not healthy)
        rows.append(
            {
                "name": task.name,
                "task": task.task,
                "enabled": task.enabled,
                "last_success": last,
                "healthy": healthy,
            }
        )
    return {
        "count": len(rows),
        "enabled": sum(r["enabled"] for r in rows),
        "stale": stale,
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
                "telemetry": _guarded("telemetry", telemetry_section),
                "jobs": _guarded("jobs", jobs_summary),
                "schedules": _guarded("schedules", schedules_summary),
                **system_sections(),
            }
        )

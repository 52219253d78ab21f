"""Writing the schedules that apps declare in code into django-celery-beat rows.

Apps declare ``SCHEDULES`` in ``<app>/schedules.py``; this module turns them into
``PeriodicTask`` rows. It only adds what is missing: once a row exists it belongs to
the operators, who may change its timing, arguments or switch it off in the admin.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from .celery import app as celery_app

SCHEDULE_APPS = ["phase3", "telemetry", *settings.PHASE3_SYSTEMS]


@dataclass
class SyncResult:
    created: list[str]
    kept: list[str]


def declared_schedules() -> list[dict]:
    found = []
    for label in SCHEDULE_APPS:
        try:
            module = importlib.import_module(f"{label}.schedules")
        except ModuleNotFoundError as exc:
            if exc.name != f"{label}.schedules":
                raise
            continue
        found.extend(getattr(module, "SCHEDULES", []))
    return found


def _validate(entry: dict) -> None:
    missing = {"name", "task"} - entry.keys()
    if missing:
        raise ValueError(f"schedule {entry!r} lacks {', '.join(sorted(missing))}")
    if ("every_seconds" in entry) == ("crontab" in entry):
        raise ValueError(f"schedule {entry['name']!r} needs exactly one of every_seconds, crontab")


@transaction.atomic
def schedules_sync() -> SyncResult:
    result = SyncResult(created=[], kept=[])
    for entry in declared_schedules():
        _validate(entry)
        if PeriodicTask.objects.filter(name=entry["name"]).exists():
            result.kept.append(entry["name"])
            continue
        fields = {
            "name": entry["name"],
            "task": entry["task"],
            "kwargs": json.dumps(entry.get("kwargs", {})),
            "description": entry.get("description", ""),
            "expire_seconds": entry.get("expires_seconds"),
            "enabled": entry.get("enabled", True),
        }
        if "every_seconds" in entry:
            fields["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=int(entry["every_seconds"]), period=IntervalSchedule.SECONDS
            )
        else:
            minute, hour, dom, month, dow = entry["crontab"].split()
            fields["crontab"], _ = CrontabSchedule.objects.get_or_create(
                minute=minute,
                hour=hour,
                day_of_month=dom,
                month_of_year=month,
                day_of_week=dow,
                timezone="UTC",
            )
        PeriodicTask.objects.create(**fields)
        result.created.append(entry["name"])
    return result


class ScheduleExpired(ValueError):
    """The schedule's absolute expiry has passed: a worker would discard its message unrun."""


def schedule_send_options(task: PeriodicTask) -> dict:
    """The options beat sends `task`'s message with (django-celery-beat's ``ModelEntry``).

    A run started by hand goes where the schedule sends it: its queue (a dedicated worker
    pool), exchange and routing key, priority, expiry (a run stuck behind a backlog is
    dropped rather than run late) and headers. Empty routing fields mean the default, as
    for beat.
    """
    options: dict = {
        field: getattr(task, field)
        for field in ("queue", "exchange", "routing_key")
        if getattr(task, field)
    }
    if task.priority is not None:
        options["priority"] = task.priority
    if task.expires_:
        options["expires"] = task.expires_
    options["headers"] = {**json.loads(task.headers or "{}"), "periodic_task_name": task.name}
    return options


def schedule_run_now(task: PeriodicTask) -> None:
    """Queue one run of `task` now, once the surrounding transaction commits.

    Sent by name through the project's Celery app, with the schedule's arguments and the
    options beat would use; raises `ScheduleExpired` rather than queue a message a worker
    would silently drop.
    """
    if task.expires and task.expires <= timezone.now():
        raise ScheduleExpired(f"schedule {task.name!r} expired at {task.expires.isoformat()}")
    args = json.loads(task.args or "[]")
    kwargs = json.loads(task.kwargs or "{}")
    options = schedule_send_options(task)
    transaction.on_commit(
        lambda: celery_app.send_task(task.task, args=args, kwargs=kwargs, **options)
    )

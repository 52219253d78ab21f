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
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

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

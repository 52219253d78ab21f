"""A schedule that has never run runs once at start, instead of one period later.

django-celery-beat counts a new schedule's first due time from when beat first sees it:
an hourly job first runs an hour after start and a daily one at its next crontab time.
On a fresh start (`make run`) that left personas, insights, forecasts and baselines
empty for up to a day, over demo data that was there from the first second. Beat itself
catches up a schedule that has run before and is overdue (its ``last_run_at`` is in the
past), so only the never-run ones need this.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from .scheduling import ScheduleExpired, schedule_run_now


@transaction.atomic
def schedules_start_never_run() -> list[str]:
    """Queue one run of each enabled, recurring schedule beat has never sent; their names.

    Each is stamped as sent now, the way beat stamps what it sends, so beat's next run is
    one period on and a second start before the worker picks them up queues nothing
    twice. Sent in the order the schedules were declared (telemetry first, insights
    last), which is the order the systems read each other's results. One-off and clocked
    schedules are left to beat: their own time says when they run.
    """
    now = timezone.now()
    started = []
    rows = (
        PeriodicTask.objects.select_for_update()
        .filter(enabled=True, one_off=False, clocked__isnull=True, last_run_at__isnull=True)
        .exclude(interval__isnull=True, crontab__isnull=True)
        .order_by("id")
    )
    for task in rows:
        try:
            schedule_run_now(task)
        except ScheduleExpired:
            continue
        started.append(task.name)
    # update(), not save(): a save would bump date_changed, which reads as an operator's edit.
    PeriodicTask.objects.filter(name__in=started).update(last_run_at=now)
    return started

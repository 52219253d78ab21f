"""Schedule health in the overview follows each schedule's real timing.

Times are explicit (``schedules_summary(now=...)``), on a calendar whose weekdays are easy
to check: 2024-05-06 is a Monday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from phase3.models import JobRun
from phase3.overview import schedules_summary

pytestmark = pytest.mark.django_db

MONDAY = datetime(2024, 5, 6, tzinfo=UTC)


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A moment in the week of Monday 2024-05-06 (day 0 = that Monday)."""
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


def cron(spec: str, tz: str = "UTC") -> CrontabSchedule:
    minute, hour, dom, month, dow = spec.split()
    return CrontabSchedule.objects.create(
        minute=minute,
        hour=hour,
        day_of_month=dom,
        month_of_year=month,
        day_of_week=dow,
        timezone=tz,
    )


def schedule(
    *, task: str = "tests.job", changed: datetime, last_sent: datetime | None = None, **fields
) -> PeriodicTask:
    """A row as beat leaves it: sent at `last_sent`, saved by beat two minutes later.

    Without `last_sent` the row was created (or enabled) at `changed` and not sent since.
    """
    row = PeriodicTask.objects.create(
        name=f"{task} {PeriodicTask.objects.count()}", task=task, **fields
    )
    PeriodicTask.objects.filter(pk=row.pk).update(date_changed=changed, last_run_at=last_sent)
    return row


def beat_sent(at_: datetime) -> dict:
    return {"changed": at_ + timedelta(minutes=2), "last_sent": at_}


def succeeded(task: str, when: datetime) -> None:
    JobRun.objects.create(task_name=task, status=JobRun.Status.SUCCESS, started_at=when)


def failed(task: str, when: datetime) -> None:
    JobRun.objects.create(task_name=task, status=JobRun.Status.FAILED, started_at=when)


def row(now: datetime, name: str | None = None) -> dict:
    rows = schedules_summary(now=now)["schedules"]
    return rows[0] if name is None else next(r for r in rows if r["name"] == name)


def test_an_hourly_crontab_failing_for_40_hours_is_stale():
    now = at(2, 12, 30)
    schedule(crontab=cron("5 * * * *"), **beat_sent(at(2, 12, 5)))
    succeeded("tests.job", now - timedelta(hours=40))
    for hours in range(1, 40):
        failed("tests.job", now - timedelta(hours=hours))
    summary = schedules_summary(now=now)
    assert summary["schedules"][0]["healthy"] is False
    assert summary["schedules"][0]["health"] == "stale"
    assert summary["stale"] == 1


def test_an_hourly_crontab_tolerates_one_missed_run_not_two():
    now = at(2, 12, 30)
    schedule(crontab=cron("5 * * * *"), **beat_sent(at(2, 12, 5)))
    succeeded("tests.job", at(2, 11, 5, 10))  # the 12:05 run failed: one miss
    first = row(now)
    assert first["healthy"] is True
    assert first["expected_by"] > now and first["period_seconds"] == 3600
    JobRun.objects.all().delete()
    succeeded("tests.job", at(2, 10, 5, 10))  # 11:05 and 12:05 both missed
    assert row(now)["healthy"] is False


def test_a_daily_crontab_is_healthy_a_day_after_its_run_and_stale_after_two_missed():
    schedule(crontab=cron("30 4 * * *"), **beat_sent(at(3, 4, 30)))
    succeeded("tests.job", at(2, 4, 30, 5))
    assert row(at(3, 5, 0))["healthy"] is True
    assert row(at(4, 4, 34))["healthy"] is True  # inside the grace of the second due time
    assert row(at(4, 4, 45))["healthy"] is False


def test_a_weekly_crontab_is_healthy_all_week_after_its_monday_run():
    schedule(crontab=cron("0 3 * * 1"), **beat_sent(at(0, 3)))
    succeeded("tests.job", at(0, 3, 0, 20))
    for day in range(1, 7):
        assert row(at(day, 12))["healthy"] is True, f"day {day}"
    assert row(at(7, 12))["healthy"] is True  # next Monday's run failed: one miss
    assert row(at(14, 12))["healthy"] is False
    assert row(at(6, 12))["period_seconds"] == 7 * 24 * 3600


def test_a_crontab_is_read_in_its_own_timezone():
    # 03:00 in New York is 07:00 UTC in May. Two New York runs missed only after 07:00 UTC.
    schedule(crontab=cron("0 3 * * *", tz="America/New_York"), **beat_sent(at(1, 7)))
    succeeded("tests.job", at(0, 7, 0, 30))
    assert row(at(2, 5))["healthy"] is True
    assert row(at(2, 7, 30))["healthy"] is False
    assert row(at(2, 5))["expected_by"] > at(2, 7)


def test_a_schedule_created_after_its_last_due_time_is_not_stale():
    schedule(crontab=cron("0 3 * * 1"), changed=at(1, 9))  # created Tuesday, never run
    created = row(at(5, 12))
    assert created["healthy"] is True and created["health"] == "pending"
    assert created["last_success"] is None and created["expected_by"] > at(5, 12)


def test_a_schedule_created_long_ago_that_never_succeeded_is_stale():
    schedule(crontab=cron("5 * * * *"), changed=at(0, 9))
    assert row(at(0, 12))["healthy"] is False


def test_a_schedule_that_never_succeeded_counts_from_its_first_run():
    # Beat has saved the row since (its change time tells nothing): the first recorded
    # run shows how long the schedule has been on.
    schedule(crontab=cron("5 * * * *"), **beat_sent(at(0, 12, 5)))
    failed("tests.job", at(0, 12, 5, 3))
    assert row(at(0, 12, 30))["healthy"] is True  # on since 12:05: one run missed
    failed("tests.job", at(0, 11, 5, 3))
    assert row(at(0, 12, 30))["healthy"] is False  # on since 11:05: two missed


def test_a_schedule_enabled_after_a_long_pause_is_not_stale_yet():
    succeeded("tests.job", at(-21, 3))
    schedule(crontab=cron("0 3 * * 1"), changed=at(1, 9))  # enabled Tuesday
    assert row(at(5, 12))["healthy"] is True


def test_a_schedule_starts_counting_at_its_start_time():
    schedule(crontab=cron("5 * * * *"), changed=at(-3), start_time=at(0, 11, 50))
    assert row(at(0, 12, 30))["healthy"] is True
    assert row(at(0, 13, 30))["healthy"] is False


def test_an_interval_schedule_keeps_two_periods_and_a_minute():
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    schedule(interval=every, **beat_sent(at(0, 12)))
    succeeded("tests.job", at(0, 12, 0, 0))
    assert row(at(0, 12, 2, 50))["healthy"] is True
    assert row(at(0, 12, 3, 10))["healthy"] is False
    assert row(at(0, 12, 1))["period_seconds"] == 60


def test_a_disabled_schedule_is_neither_healthy_nor_stale():
    schedule(crontab=cron("5 * * * *"), changed=at(0), enabled=False)
    summary = schedules_summary(now=at(3))
    assert summary["schedules"][0]["healthy"] is False
    assert summary["schedules"][0]["health"] == "disabled"
    assert summary["stale"] == 0 and summary["enabled"] == 0


def test_one_off_clocked_and_solar_schedules_do_not_break_the_overview():
    clock = ClockedSchedule.objects.create(clocked_time=at(0, 12))
    schedule(task="tests.clocked", clocked=clock, one_off=True, changed=at(0, 9))
    sun = SolarSchedule.objects.create(event="sunrise", latitude=48.85, longitude=2.35)
    schedule(task="tests.solar", solar=sun, changed=at(0, 9))
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    schedule(task="tests.once", interval=every, one_off=True, changed=at(0, 9))

    before = schedules_summary(now=at(0, 11))
    by_task = {r["task"]: r for r in before["schedules"]}
    assert by_task["tests.clocked"]["health"] == "pending"
    assert by_task["tests.solar"]["health"] == "unknown"
    assert by_task["tests.solar"]["healthy"] is None
    assert by_task["tests.once"]["health"] == "stale"  # its one run was due at 10:00
    assert before["unknown"] == 1

    after = {r["task"]: r for r in schedules_summary(now=at(0, 13))["schedules"]}
    assert after["tests.clocked"]["health"] == "stale"
    succeeded("tests.clocked", at(0, 12, 0, 5))
    succeeded("tests.once", at(0, 10, 0, 5))
    done = {r["task"]: r for r in schedules_summary(now=at(0, 13))["schedules"]}
    assert done["tests.clocked"]["healthy"] is True
    assert done["tests.once"]["healthy"] is True


@pytest.mark.parametrize("action", ["enable_tasks", "toggle_tasks"])
def test_the_admin_enable_action_restarts_the_count(admin_client, action):
    task = schedule(crontab=cron("0 3 * * 1"), changed=at(-30), enabled=False)
    succeeded("tests.job", at(-28, 3))
    admin_client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": action, "_selected_action": [task.pk]},
    )
    task.refresh_from_db()
    assert task.enabled
    assert admin_client.get("/admin/django_celery_beat/periodictask/").status_code == 200
    assert row(datetime.now(UTC) + timedelta(days=3))["healthy"] is True


def test_every_declared_schedule_is_judged():
    from phase3.scheduling import schedules_sync

    schedules_sync()
    summary = schedules_summary(now=datetime.now(UTC) + timedelta(days=30))
    assert summary["count"] > 10 and summary["unknown"] == 0
    assert summary["stale"] == summary["enabled"]  # nothing ran in a month


def test_the_overview_shows_when_each_schedule_is_expected(client_with_role):
    schedule(crontab=cron("5 * * * *"), changed=datetime.now(UTC) - timedelta(minutes=10))
    body = client_with_role("viewer").get("/admin/api/phase3/overview").json()["schedules"]
    assert body["stale"] == 0
    assert {"expected_by", "period_seconds", "health"} <= body["schedules"][0].keys()

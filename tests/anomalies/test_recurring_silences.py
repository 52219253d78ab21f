"""Recurring silences (Alertmanager's time intervals, Datadog's recurring downtimes): a
nightly backup or a weekend maintenance is one silence that mutes only in its window."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from anomalies.models import ResponseExecution, ResponsePlaybook, Silence
from anomalies.time_windows import in_recurring_window
from tests.anomalies.test_inhibition import _anomaly

BASE = "/admin/api/phase3/anomaly/silences/"
# 2026-12-05 is a Saturday.
SAT = datetime(2026, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "weekdays", "start", "end", "zone", "muted"),
    [
        # Weekends, 02:00-04:00 UTC.
        (SAT + timedelta(hours=3), ["saturday", "sunday"], time(2), time(4), "UTC", True),
        (SAT + timedelta(hours=4), ["saturday", "sunday"], time(2), time(4), "UTC", False),
        (SAT + timedelta(days=1, hours=2), ["saturday", "sunday"], time(2), time(4), "UTC", True),
        (SAT - timedelta(hours=21), ["saturday", "sunday"], time(2), time(4), "UTC", False),
        # Friday 22:00 to 02:00: Saturday 01:00 is Friday's night; Friday 01:00 is not.
        (SAT - timedelta(hours=1), ["friday"], time(22), time(2), "UTC", True),
        (SAT + timedelta(hours=1), ["friday"], time(22), time(2), "UTC", True),
        (SAT + timedelta(hours=2), ["friday"], time(22), time(2), "UTC", False),
        (SAT - timedelta(hours=23), ["friday"], time(22), time(2), "UTC", False),
        (SAT + timedelta(hours=23), ["friday"], time(22), time(2), "UTC", False),
        # Every day 02:00-04:00 in Paris: 01:30 UTC is 02:30 there in winter, 03:30 in
        # summer; 03:30 UTC is 04:30 there in winter.
        (SAT + timedelta(hours=1.5), [], time(2), time(4), "Europe/Paris", True),
        (datetime(2026, 7, 4, 1, 30, tzinfo=UTC), [], time(2), time(4), "Europe/Paris", True),
        (SAT + timedelta(hours=3.5), [], time(2), time(4), "Europe/Paris", False),
        # Whole days.
        (SAT + timedelta(hours=13), ["saturday"], None, None, "UTC", True),
        (SAT - timedelta(hours=1), ["saturday"], None, None, "UTC", False),
    ],
)
def test_a_window_mutes_on_its_days_and_hours_where_it_is_read(
    at, weekdays, start, end, zone, muted
):
    assert in_recurring_window(at, weekdays=weekdays, start=start, end=end, time_zone=zone) is muted


@pytest.mark.django_db
def test_a_recurring_silence_mutes_pages_in_its_window_only(eager):
    """The nightly backup's window holds the database's page back; out of it, the same
    anomaly pages, as it would after a one-off silence ends."""
    now = timezone.now()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    Silence.objects.create(
        series_pattern="db.*",
        starts_at=now - timedelta(days=30),
        ends_at=now + timedelta(days=300),
        daily_start=(now - timedelta(minutes=60)).time().replace(tzinfo=None),
        daily_end=(now - timedelta(minutes=10)).time().replace(tzinfo=None),
        comment="nightly backup",
    )
    backup = _anomaly("db.connections.active", now - timedelta(minutes=30))
    eager([backup], now - timedelta(minutes=30))  # in the window
    assert not ResponseExecution.objects.exists() and mail.outbox == []
    eager([backup], now)  # the window is over: paged (and sent: checked again at send time)
    assert ResponseExecution.objects.get().status == ResponseExecution.Status.SUCCEEDED
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_the_api_makes_a_recurring_silence_and_says_when_it_mutes(client_with_role):
    body = {
        "series_pattern": "db.*",
        "ends_at": (timezone.now() + timedelta(days=90)).isoformat(),
        "weekdays": ["saturday", "sunday"],
        "daily_start": "02:00",
        "daily_end": "04:00",
        "time_zone": "Europe/Paris",
        "comment": "weekend maintenance",
    }
    created = client_with_role("operator").post(BASE, body, format="json")
    assert created.status_code == 201, created.content
    silence = Silence.objects.get()
    assert silence.recurs and silence.daily_start == time(2)
    listed = client_with_role("viewer").get(BASE).json()["results"][0]
    assert listed["weekdays"] == ["saturday", "sunday"] and listed["time_zone"] == "Europe/Paris"
    assert listed["active"] is silence.is_active(timezone.now())
    # Saturday 02:30 in Paris (01:30 UTC in December) it mutes, at noon it does not, and the
    # `active` filter reads the window, not only the start and end.
    assert silence.is_active(SAT + timedelta(days=7, hours=1.5))
    assert not silence.is_active(SAT + timedelta(days=7, hours=12))
    active = {
        s["id"] for s in client_with_role("viewer").get(BASE, {"active": "true"}).json()["results"]
    }
    assert (silence.pk in active) is silence.is_active(timezone.now())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weekdays": ["someday"]}, "weekdays"),
        ({"weekdays": ["monday", "monday"]}, "weekdays"),
        ({"daily_start": "02:00"}, "daily_end"),
        ({"daily_end": "02:00"}, "daily_start"),
        ({"daily_start": "02:00", "daily_end": "02:00"}, "daily_end"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": "Europe"}, "time_zone"),
        ({"daily_start": "25:00", "daily_end": "02:00"}, "daily_start"),
    ],
)
def test_a_recurrence_that_cannot_work_is_refused_naming_the_field(client_with_role, change, field):
    body = {
        "series_pattern": "db.*",
        "ends_at": (timezone.now() + timedelta(days=1)).isoformat(),
        "comment": "backup",
        **change,
    }
    response = client_with_role("operator").post(BASE, body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Silence.objects.exists()


@pytest.mark.django_db
def test_the_admin_list_says_when_a_silence_recurs(admin_client):
    Silence.objects.create(
        series_pattern="db.*",
        ends_at=timezone.now() + timedelta(days=9),
        weekdays=["saturday", "sunday"],
        daily_start=time(2),
        daily_end=time(4),
        time_zone="Europe/Paris",
        comment="weekend maintenance",
    )
    page = admin_client.get("/admin/anomalies/silence/").content.decode()
    assert "saturday, sunday 02:00-04:00 (Europe/Paris)" in page

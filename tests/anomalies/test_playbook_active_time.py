"""A playbook's active time (Alertmanager's `active_time_intervals`, PagerDuty's support
hours): a business-hours channel hears nothing at night, and what still goes on when its
hours begin is paged then, while the pager's playbook sends at any hour."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from anomalies.models import Anomaly, ResponseExecution, ResponsePlaybook
from tests.anomalies.test_inhibition import _anomaly
from tests.anomalies.test_recurring_silences import SAT

URL = "/admin/api/phase3/anomaly/playbooks/"
WEEK = ["monday", "tuesday", "wednesday", "thursday", "friday"]


def _hours(start: datetime, end: datetime) -> dict:
    """Active daily from `start` to `end` (UTC clock times)."""
    return {
        "active_start": start.time().replace(tzinfo=None),
        "active_end": end.time().replace(tzinfo=None),
    }


def _to(address: str) -> list:
    return [m for m in mail.outbox if m.to == [address]]


@pytest.mark.parametrize(
    ("at", "active"),
    [
        (SAT + timedelta(days=2, hours=8.5), True),  # Monday 09:30 in Paris (winter)
        (SAT + timedelta(days=2, hours=7.5), False),  # Monday 08:30 in Paris
        (SAT + timedelta(days=2, hours=17.5), False),  # Monday 18:30 in Paris
        (SAT + timedelta(hours=10), False),  # Saturday
        (SAT + timedelta(days=2, hours=16.5), True),  # Monday 17:30 in Paris (winter)...
        (datetime(2026, 7, 6, 16, 30, tzinfo=UTC), False),  # ...18:30 there in summer
    ],
)
def test_a_playbook_is_active_on_its_days_and_hours_where_they_are_read(at, active):
    playbook = ResponsePlaybook(
        active_weekdays=WEEK,
        active_start=time(9),
        active_end=time(18),
        active_time_zone="Europe/Paris",
    )
    assert playbook.active_at(at) is active
    assert ResponsePlaybook().active_at(at)  # no window: always


@pytest.mark.django_db
def test_outside_its_hours_a_playbook_pages_nothing_and_pages_what_goes_on_when_they_begin(
    eager,
):
    now = timezone.now()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    ResponsePlaybook.objects.create(
        name="team channel",
        action="email",
        target="team@example.com",
        **_hours(now - timedelta(minutes=10), now + timedelta(minutes=50)),
    )
    night = _anomaly("db.connections.active", now - timedelta(minutes=30))
    eager([night], now - timedelta(minutes=30))
    assert len(_to("oncall@example.com")) == 1 and _to("team@example.com") == []
    assert not ResponseExecution.objects.filter(playbook__name="team channel").exists()
    eager([night], now - timedelta(minutes=20))
    assert _to("team@example.com") == []
    eager([night], now)  # its hours began: what still goes on is paged
    (page,) = _to("team@example.com")
    assert page.subject == "db.connections.active is abnormal (critical)"
    assert len(_to("oncall@example.com")) == 1  # the pager was not paged twice


@pytest.mark.django_db
def test_reminders_wait_for_the_playbook_s_hours(eager):
    now = timezone.now()
    ResponsePlaybook.objects.create(
        name="team channel",
        action="email",
        target="team@example.com",
        repeat_interval_seconds=600,
        **_hours(now - timedelta(minutes=40), now - timedelta(minutes=25)),
    )
    a = _anomaly("db.connections.active", now - timedelta(minutes=35))
    eager([a], now - timedelta(minutes=35))
    assert len(mail.outbox) == 1
    later = now + timedelta(minutes=15)  # a reminder is due, but the hours are over
    Anomaly.objects.filter(pk=a.pk).update(last_seen_at=later)
    eager([a], later)
    assert len(mail.outbox) == 1
    assert ResponseExecution.objects.get().status == ResponseExecution.Status.SUCCEEDED
    tomorrow = now + timedelta(days=1) - timedelta(minutes=30)  # in the next day's hours
    Anomaly.objects.filter(pk=a.pk).update(last_seen_at=tomorrow)  # still abnormal
    eager([a], tomorrow)
    assert [m.subject.split(" ")[0] for m in mail.outbox] == ["db.connections.active", "Reminder:"]


@pytest.mark.django_db
def test_the_api_saves_a_playbook_s_hours_and_refuses_ones_that_cannot_work(client_with_role):
    admin = client_with_role("admin")
    fields = {
        "name": "team channel",
        "action": "email",
        "target": "team@example.com",
        "active_weekdays": WEEK,
        "active_start": "09:00",
        "active_end": "18:00",
        "active_time_zone": "Europe/Paris",
    }
    created = admin.post(URL, fields, format="json")
    assert created.status_code == 201, created.content
    read = admin.get(f"{URL}{created.json()['id']}").json()
    assert read["active_weekdays"] == WEEK
    assert (read["active_start"], read["active_end"]) == ("09:00:00", "18:00:00")
    for change, field in [
        ({"active_weekdays": ["funday"]}, "active_weekdays"),
        ({"active_weekdays": ["monday", "monday"]}, "active_weekdays"),
        ({"active_weekdays": "monday"}, "active_weekdays"),
        ({"active_end": None}, "active_end"),
        ({"active_start": None}, "active_start"),
        ({"active_end": "09:00"}, "active_end"),
        ({"active_time_zone": "Mars/Olympus"}, "active_time_zone"),
        ({"active_start": "25:00"}, "active_start"),
    ]:
        answer = admin.post(URL, fields | {"name": f"other {field}"} | change, format="json")
        assert answer.status_code == 400 and field in answer.json(), (change, answer.content)
    playbook = created.json()["id"]
    answer = admin.patch(f"{URL}{playbook}", {"active_time_zone": "Nowhere"}, format="json")
    assert answer.status_code == 400 and "active_time_zone" in answer.json()


@pytest.mark.django_db
def test_the_admin_list_says_when_a_playbook_is_active(admin_client):
    ResponsePlaybook.objects.create(
        name="team channel",
        action="email",
        target="team@example.com",
        active_weekdays=WEEK,
        active_start=time(9),
        active_end=time(18),
        active_time_zone="Europe/Paris",
    )
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    page = admin_client.get("/admin/anomalies/responseplaybook/").content.decode()
    assert "monday, tuesday, wednesday, thursday, friday 09:00-18:00 (Europe/Paris)" in page
    assert "always" in page


@pytest.mark.django_db
def test_the_admin_form_refuses_hours_that_cannot_work_and_saves_good_ones(admin_client):
    from tests.anomalies.test_api import _playbook_form

    playbook = ResponsePlaybook.objects.create(
        name="team channel", action="email", target="team@example.com"
    )
    url = f"/admin/anomalies/responseplaybook/{playbook.pk}/change/"
    form = _playbook_form(playbook, target=playbook.target, active_start="09:00")
    refused = admin_client.post(url, form)
    assert refused.status_code == 200
    assert "give both the start and the end of the daily window" in refused.content.decode()
    saved = admin_client.post(url, form | {"active_end": "18:00", "active_weekdays": '["monday"]'})
    assert saved.status_code == 302
    playbook.refresh_from_db()
    assert playbook.active_weekdays == ["monday"]
    assert (playbook.active_start, playbook.active_end) == (time(9), time(18))

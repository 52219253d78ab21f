"""PagerDuty playbooks: Events API v2 events, one PagerDuty alert per notification group,
resolved when the group ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anomalies import services
from anomalies.models import ResponseExecution, ResponsePlaybook
from anomalies.responses import pagerduty_event
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.anomalies.test_playbook_test import _test, posted  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
EVENTS = "https://events.pagerduty.example/v2/enqueue"
BASE = "/admin/api/phase3/anomaly/playbooks"


@pytest.fixture(autouse=True)
def _events_url(settings):
    settings.PHASE3_PAGERDUTY_EVENTS_URL = EVENTS


def _pager(**fields) -> ResponsePlaybook:
    return ResponsePlaybook.objects.create(
        **{"name": "pd", "action": "pagerduty", "target": KEY, **fields}
    )


def test_a_trigger_says_what_the_page_says_and_a_resolution_resolves_the_same_alert():
    anomaly = AnomalyFactory(
        series=series_ensure(name="db.connections.active", labels={"env": "prod"}),
        severity="critical",
        observed=120.0,
        expected=40.0,
    )
    playbook = _pager()
    event, firing = pagerduty_event(anomaly, playbook)
    assert firing == []
    assert event["routing_key"] == KEY and event["event_action"] == "trigger"
    assert event["dedup_key"].startswith("phase3-")
    payload = event["payload"]
    assert payload["summary"] == "db.connections.active{env=prod} is abnormal (critical)"
    assert payload["severity"] == "critical"
    assert payload["source"] == "db.connections.active{env=prod}"
    assert payload["component"] == "db.connections.active"
    details = payload["custom_details"]
    assert details["description"].startswith("observed 120 vs expected 40")
    assert details["labels"]["env"] == "prod"
    (link,) = event["links"]
    assert link["href"].endswith(f"/admin/anomalies/anomaly/{anomaly.pk}/change/")
    reminder, _ = pagerduty_event(anomaly, playbook, kind="reminder")
    assert reminder["payload"]["summary"].startswith("Reminder: db.connections.active")
    assert reminder["dedup_key"] == event["dedup_key"]  # deduplicated onto the same alert
    anomaly.ended_at = anomaly.started_at + timedelta(minutes=30)
    resolved, _ = pagerduty_event(anomaly, playbook)
    assert resolved == {
        "routing_key": KEY,
        "dedup_key": event["dedup_key"],
        "event_action": "resolve",
    }
    other = AnomalyFactory(series=series_ensure(name="db.connections.active"))
    assert pagerduty_event(other, playbook)[0]["dedup_key"] != event["dedup_key"]


def test_a_page_its_escalation_and_its_resolution_are_sent(posted):  # noqa: F811
    sent, _ = posted
    anomaly = AnomalyFactory(series=series_ensure(name="db.connections.active"), severity="warning")
    playbook = _pager()
    execution = ResponseExecution.objects.create(playbook=playbook, anomaly=anomaly)
    services.response_execute(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == "succeeded"
    assert execution.result["http_status"] == 200 and execution.result["dedup_key"]
    anomaly.severity = "critical"
    anomaly.save(update_fields=["severity"])
    services.response_notify_escalated(execution_id=execution.pk, told="warning")
    anomaly.ended_at = timezone.now()
    anomaly.save(update_fields=["ended_at"])
    services.response_notify_resolved(execution_id=execution.pk)
    assert [url for url, _ in sent] == [EVENTS] * 3
    assert [(b["event_action"], b.get("payload", {}).get("severity")) for _, b in sent] == [
        ("trigger", "warning"),
        ("trigger", "critical"),
        ("resolve", None),
    ]
    assert len({b["dedup_key"] for _, b in sent}) == 1


def test_a_group_keeps_one_alert_until_its_last_member_ends(eager, posted):  # noqa: F811
    """Under `group_by`, the first member's end is not the alert's: PagerDuty is resolved
    once no member fires."""
    sent, _ = posted
    t0 = timezone.now()
    _pager(group_by=["service"])
    cart = AnomalyFactory(
        series=series_ensure(name="http.latency.p95", labels={"service": "checkout"}),
        started_at=t0,
        severity="critical",
    )
    errors = AnomalyFactory(
        series=series_ensure(name="http.errors.ratio", labels={"service": "checkout"}),
        started_at=t0 + timedelta(minutes=1),
        severity="critical",
    )
    eager([cart], t0)
    eager([cart, errors], t0 + timedelta(minutes=1))
    cart.ended_at = t0 + timedelta(minutes=5)
    cart.save(update_fields=["ended_at"])
    page = ResponseExecution.objects.get(anomaly=cart)
    services.response_notify_resolved(execution_id=page.pk)
    actions = [b["event_action"] for _, b in sent]
    assert actions == ["trigger", "trigger"]  # the page, then the group still firing
    assert "http.errors.ratio{service=checkout}" in str(sent[-1][1]["payload"]["custom_details"])
    # The next member carries the group on, on the same alert; then nothing is news.
    for minutes in (10, 20, 30):
        eager([errors], t0 + timedelta(minutes=minutes))
    assert [b["event_action"] for _, b in sent] == ["trigger"] * 3
    assert sent[-1][1]["payload"]["source"] == "http.errors.ratio{service=checkout}"
    errors.ended_at = t0 + timedelta(minutes=31)
    errors.save(update_fields=["ended_at"])
    services.response_notify_resolved(execution_id=ResponseExecution.objects.get(anomaly=errors).pk)
    assert sent[-1][1]["event_action"] == "resolve"
    assert len({b["dedup_key"] for _, b in sent}) == 1


def test_a_test_notification_opens_and_resolves_a_test_alert(client_with_role, posted):  # noqa: F811
    sent, _ = posted
    playbook = _pager()
    answer = _test(client_with_role("admin"), playbook)
    assert answer.status_code == 200 and answer.json()["ok"] is True
    (trigger_url, trigger), (_, resolve) = sent
    assert trigger_url == EVENTS
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert trigger["payload"]["summary"] == "[test] Test notification from Phase 3 playbook pd"
    assert not ResponseExecution.objects.exists()


def test_a_refused_routing_key_fails_at_once_with_pagerduty_s_reason(posted):  # noqa: F811
    _, answer = posted
    answer[0] = 400
    anomaly = AnomalyFactory(series=series_ensure(name="db.connections.active"))
    execution = ResponseExecution.objects.create(playbook=_pager(), anomaly=anomaly)
    services.response_execute(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == "failed" and execution.attempts == 1
    assert execution.error.startswith("PagerDuty answered HTTP 400")


def test_a_routing_key_is_checked_and_hidden_below_the_admin_role(client_with_role):
    admin = client_with_role("admin")
    fields = {"name": "pd", "action": "pagerduty", "target": "https://events.pagerduty.com"}
    refused = admin.post(BASE, fields, format="json")
    assert refused.status_code == 400 and "integration key" in refused.json()["target"][0]
    made = admin.post(BASE, fields | {"target": KEY}, format="json")
    assert made.status_code == 201, made.content
    shown = client_with_role("operator").get(f"{BASE}/{made.json()['id']}").json()["target"]
    assert shown == "…CDEF"
    assert admin.get(f"{BASE}/{made.json()['id']}").json()["target"] == KEY


def test_a_kept_routing_key_is_not_carried_over_to_a_webhook(admin_client):
    """Staff below the admin role see the key masked in the admin's form; switching the
    playbook to a webhook while keeping it would send the key as a URL."""
    from tests.anomalies.test_api import _playbook_form, _staff_operator

    playbook = _pager()
    staff = _staff_operator("view_responseplaybook", "change_responseplaybook")
    url = f"/admin/anomalies/responseplaybook/{playbook.pk}/change/"
    form = staff.get(url).content.decode()
    assert KEY not in form and "…CDEF" in form
    kept = staff.post(url, _playbook_form(playbook, target="…CDEF", min_severity="critical"))
    assert kept.status_code == 302
    playbook.refresh_from_db()
    assert (playbook.target, playbook.min_severity) == (KEY, "critical")
    moved = staff.post(url, _playbook_form(playbook, target="…CDEF", action="webhook"))
    assert moved.status_code == 200
    assert "the stored routing key is not carried over" in moved.content.decode()


def test_a_member_that_ends_under_a_firing_group_is_not_news_for_ever(eager, posted):  # noqa: F811
    """A webhook's group resolves each member as it ends, once; PagerDuty's one alert has
    nothing to resolve until the group ends, and must not be re-triggered at every
    update interval because a member ended."""
    sent, _ = posted
    t0 = timezone.now()
    _pager(group_by=["service"])
    cart, errors = (
        AnomalyFactory(
            series=series_ensure(name=name, labels={"service": "checkout"}),
            started_at=t0 + timedelta(minutes=i),
            severity="critical",
        )
        for i, name in enumerate(("http.latency.p95", "http.errors.ratio"))
    )
    eager([cart, errors], t0 + timedelta(minutes=1))  # one page, naming both
    assert [b["event_action"] for _, b in sent] == ["trigger"]
    assert "http.errors.ratio" in str(sent[0][1]["payload"]["custom_details"])
    errors.ended_at = t0 + timedelta(minutes=8)
    errors.save(update_fields=["ended_at"])
    for minutes in (14, 20, 26):
        eager([cart], t0 + timedelta(minutes=minutes))
    assert len(sent) == 1

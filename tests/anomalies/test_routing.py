"""Why each playbook did or did not respond to an anomaly: "why was I not paged?"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anomalies.models import ResponsePlaybook, Silence
from tests.anomalies.test_inhibition import _anomaly

pytestmark = pytest.mark.django_db

BASE = "/admin/api/phase3/anomaly/anomalies/"


def _routes(client, anomaly) -> dict[str, dict]:
    answer = client.get(f"{BASE}{anomaly.pk}/routing")
    assert answer.status_code == 200, answer.content
    return {row["name"]: row for row in answer.json()}


def test_each_playbook_says_whether_it_matched_and_every_reason_it_did_not(client_with_role, eager):
    now = timezone.now()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    ResponsePlaybook.objects.create(
        name="payments team",
        action="email",
        target="payments@example.com",
        series_name="payments.*",
        labels={"env": "prod", "team": "payments"},
        min_severity="critical",
    )
    a = _anomaly("http.latency.p95", now, "warning", env="staging")
    eager([a], now)
    routes = _routes(client_with_role("viewer"), a)
    assert routes["pager"]["matches"] and routes["pager"]["not_matched"] == []
    assert routes["pager"]["execution"]["status"] == "succeeded"
    payments = routes["payments team"]
    assert not payments["matches"] and payments["execution"] is None
    assert payments["not_matched"] == [
        "series http.latency.p95 does not match 'payments.*'",
        "needs label env='prod'; the series has 'staging'",
        "needs label team='payments'; the series has none",
        "warning is below its minimum severity, critical",
    ]
    assert payments["held_now"] == []


def test_a_match_without_an_execution_says_what_holds_it_back(client_with_role, eager):
    now = timezone.now()
    ResponsePlaybook.objects.create(
        name="business hours",
        action="email",
        target="team@example.com",
        active_start=(now + timedelta(hours=2)).time().replace(tzinfo=None),
        active_end=(now + timedelta(hours=3)).time().replace(tzinfo=None),
    )
    ResponsePlaybook.objects.create(
        name="off", action="email", target="off@example.com", enabled=False
    )
    a = _anomaly("db.connections.active", now)
    silence = Silence.objects.create(
        series_pattern="db.*", ends_at=now + timedelta(hours=1), comment="failover drill"
    )
    eager([a], now)
    routes = _routes(client_with_role("viewer"), a)
    assert routes["business hours"]["held_now"] == [
        "outside the playbook's active hours: it responds when they begin",
        f"muted by silence {silence.pk}",
    ]
    assert routes["off"]["held_now"] == [
        "the playbook is disabled",
        f"muted by silence {silence.pk}",
    ]
    silence.delete()
    ResponsePlaybook.objects.create(name="fresh", action="email", target="new@example.com")
    routes = _routes(client_with_role("viewer"), a)
    assert routes["fresh"]["execution"] is None
    assert routes["fresh"]["held_now"] == []  # the next run responds
    ResponsePlaybook.objects.filter(name="fresh").update(active_time_zone="Mars/Olympus")
    routes = _routes(client_with_role("viewer"), a)
    assert routes["fresh"]["held_now"] == [
        "the scoring job skips the playbook: its checks refuse active_time_zone"
    ]


def test_a_held_back_page_says_why_and_the_admin_page_shows_it(admin_client, eager):
    from tests.anomalies.test_group_by import _pager

    t0 = timezone.now()
    _pager()
    cart = _anomaly("http.latency.p95", t0, service="checkout")
    errors = _anomaly("http.errors.ratio", t0 + timedelta(minutes=1), service="checkout")
    eager([cart], t0)
    eager([cart, errors], t0 + timedelta(minutes=1))
    page = admin_client.get(f"/admin/anomalies/anomaly/{errors.pk}/change/").content.decode()
    assert "<strong>pager</strong> (email): inhibited: not sent: the first of its group" in page
    old = _anomaly("cpu.busy", t0 - timedelta(hours=3))
    page = admin_client.get(f"/admin/anomalies/anomaly/{old.pk}/change/").content.decode()
    assert "last abnormal over an hour ago: too old to page" in page


def test_routing_is_for_viewers_and_an_unknown_anomaly_is_a_404(client_with_role):
    assert client_with_role("viewer").get(f"{BASE}999999/routing").status_code == 404

"""Operator actions on many anomalies at once: an incident acknowledged, resolved or
dismissed in one call, all or none."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anomalies.models import Anomaly, DismissedPattern
from tests.anomalies.test_inhibition import _anomaly

pytestmark = pytest.mark.django_db

URL = "/admin/api/phase3/anomaly/anomalies/bulk"


def _incident(n: int = 3) -> list[Anomaly]:
    t0 = timezone.now()
    return [
        _anomaly("http.latency.p95", t0 + timedelta(seconds=i), endpoint=f"/e{i}") for i in range(n)
    ]


def _statuses(anomalies: list[Anomaly]) -> list[str]:
    return [Anomaly.objects.get(pk=a.pk).status for a in anomalies]


def test_an_incident_is_acknowledged_in_one_call(client_with_role):
    incident = _incident()
    ids = [a.pk for a in reversed(incident)]
    answer = client_with_role("operator").post(
        URL, {"action": "acknowledge", "ids": [*ids, ids[0]], "note": "db failover"}, format="json"
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["action"] == "acknowledge"
    assert [a["id"] for a in body["anomalies"]] == ids  # in the order given, once each
    assert {a["status"] for a in body["anomalies"]} == {"acknowledged"}
    for a in Anomaly.objects.filter(pk__in=ids):
        assert a.status == "acknowledged" and a.note == "db failover"
        assert a.acknowledged_by and a.confirmed_at is not None


def test_resolving_ends_each_anomaly(client_with_role):
    incident = _incident(2)
    answer = client_with_role("operator").post(
        URL, {"action": "resolve", "ids": [a.pk for a in incident]}, format="json"
    )
    assert answer.status_code == 200
    assert _statuses(incident) == ["resolved", "resolved"]
    assert all(a["ended_at"] and a["resolved_by"] for a in answer.json()["anomalies"])


def test_false_positives_are_each_learned(client_with_role):
    incident = _incident(2)
    answer = client_with_role("operator").post(
        URL, {"action": "false_positive", "ids": [a.pk for a in incident]}, format="json"
    )
    assert answer.status_code == 200
    assert _statuses(incident) == ["false_positive", "false_positive"]
    assert set(DismissedPattern.objects.values_list("anomaly_id", flat=True)) == {
        a.pk for a in incident
    }


def test_one_anomaly_the_action_does_not_allow_changes_nothing(client_with_role):
    incident = _incident()
    Anomaly.objects.filter(pk=incident[1].pk).update(status="resolved")
    answer = client_with_role("operator").post(
        URL, {"action": "acknowledge", "ids": [a.pk for a in incident]}, format="json"
    )
    assert answer.status_code == 400
    (message,) = answer.json()["ids"]
    assert f"anomaly {incident[1].pk} no longer open" in message
    assert "nothing was changed" in message
    assert _statuses(incident) == ["open", "resolved", "open"]


def test_an_unknown_id_changes_nothing(client_with_role):
    incident = _incident(2)
    missing = max(a.pk for a in incident) + 1000
    answer = client_with_role("operator").post(
        URL, {"action": "resolve", "ids": [incident[0].pk, missing]}, format="json"
    )
    assert answer.status_code == 400
    assert f"no anomaly with id {missing}" in answer.json()["ids"][0]
    assert _statuses(incident) == ["open", "open"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "snooze", "ids": [1]}, "action"),
        ({"ids": [1]}, "action"),
        ({"action": "resolve"}, "ids"),
        ({"action": "resolve", "ids": []}, "ids"),
        ({"action": "resolve", "ids": ["one"]}, "ids"),
        ({"action": "resolve", "ids": [0]}, "ids"),
        ({"action": "resolve", "ids": 5}, "ids"),
        ({"action": "resolve", "ids": list(range(1, 502))}, "ids"),
        ({"action": "resolve", "ids": [1], "note": "x" * 2001}, "note"),
    ],
)
def test_a_bulk_action_that_cannot_work_is_refused_naming_the_field(client_with_role, body, field):
    answer = client_with_role("operator").post(URL, body, format="json")
    assert answer.status_code == 400 and field in answer.json(), answer.content


def test_viewers_may_not_act(client_with_role):
    (a,) = _incident(1)
    answer = client_with_role("viewer").post(URL, {"action": "resolve", "ids": [a.pk]})
    assert answer.status_code == 403
    assert _statuses([a]) == ["open"]

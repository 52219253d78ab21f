"""Microsoft Teams playbooks: an Adaptive Card per page, reminder, update, escalation and
resolution, through the same transport, retries and checks as a Slack playbook."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anomalies import services
from anomalies.models import ResponseExecution, ResponsePlaybook
from anomalies.responses import perform_action, teams_payload
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.anomalies.test_playbook_test import _test, posted  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

URL = "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke"


def _card(body: dict) -> dict:
    (attachment,) = body["attachments"]
    assert body["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    return attachment["content"]


def _texts(card: dict) -> list[str]:
    """Every line, as Teams shows it: RichTextBlocks of TextRuns, never Markdown."""
    assert all(block["type"] == "RichTextBlock" for block in card["body"])
    return ["".join(run["text"] for run in block["inlines"]) for block in card["body"]]


def test_a_card_says_what_a_page_says_and_keeps_names_out_of_markdown():
    anomaly = AnomalyFactory(
        series=series_ensure(name="http_requests_total", labels={"job": "api_*"}),
        severity="critical",
        observed=120.0,
        expected=40.0,
    )
    card = _card(teams_payload(anomaly))
    title, values, since = _texts(card)
    assert title == "[critical] http_requests_total{job=api_*} is abnormal"
    assert card["body"][0]["inlines"][0]["color"] == "Attention"
    assert values.startswith("observed 120 vs expected 40; methods: statistical, pattern")
    assert since.startswith("since ")
    (open_it,) = card["actions"]
    assert open_it["type"] == "Action.OpenUrl"
    assert open_it["url"].endswith(f"/admin/anomalies/anomaly/{anomaly.pk}/change/")
    # A reminder and an update say so: a posted card is not edited by the next one.
    assert _texts(_card(teams_payload(anomaly, kind="update")))[0].startswith("Update: [critical]")
    anomaly.ended_at = anomaly.started_at + timedelta(minutes=42)
    resolved = _card(teams_payload(anomaly))
    assert _texts(resolved)[0] == "[resolved] http_requests_total{job=api_*} is back to normal"
    assert resolved["body"][0]["inlines"][0]["color"] == "Good"


def test_a_teams_page_its_escalation_and_its_resolution_are_posted(posted):  # noqa: F811
    sent, _ = posted
    anomaly = AnomalyFactory(series=series_ensure(name="db.connections.active"), severity="warning")
    playbook = ResponsePlaybook.objects.create(name="ops", action="teams", target=URL)
    execution = ResponseExecution.objects.create(playbook=playbook, anomaly=anomaly)
    services.response_execute(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == "succeeded" and execution.result == {"http_status": 200}
    anomaly.severity = "critical"
    anomaly.save(update_fields=["severity"])
    services.response_notify_escalated(execution_id=execution.pk, told="warning")
    anomaly.ended_at = timezone.now()
    anomaly.save(update_fields=["ended_at"])
    services.response_notify_resolved(execution_id=execution.pk)
    assert [url for url, _ in sent] == [URL] * 3
    titles = [_texts(_card(body))[0] for _, body in sent]
    assert titles == [
        "[warning] db.connections.active is abnormal",
        "[critical] db.connections.active is abnormal",
        "[resolved] db.connections.active is back to normal",
    ]


def test_a_teams_test_notification_says_it_is_a_test(client_with_role, posted):  # noqa: F811
    sent, _ = posted
    playbook = ResponsePlaybook.objects.create(name="ops", action="teams", target=URL)
    answer = _test(client_with_role("admin"), playbook)
    assert answer.status_code == 200 and answer.json()["ok"] is True
    ((url, body),) = sent
    title, description = _texts(_card(body))
    assert url == URL and title == "[test] Test notification from Phase 3 playbook ops"
    assert "No anomaly is behind it" in description


def test_a_teams_playbook_needs_a_url_and_hides_it_from_operators(client_with_role):
    base = "/admin/api/phase3/anomaly/playbooks"
    refused = client_with_role("admin").post(
        base, {"name": "ops", "action": "teams", "target": "ops channel"}, format="json"
    )
    assert refused.status_code == 400 and "target" in refused.json()
    made = client_with_role("admin").post(
        base, {"name": "ops", "action": "teams", "target": URL}, format="json"
    )
    assert made.status_code == 201, made.content
    shown = client_with_role("operator").get(f"{base}/{made.json()['id']}").json()["target"]
    assert shown != URL and "abc" not in shown  # a workflow URL is a credential


def test_a_chat_reminder_or_update_says_what_it_is(posted):  # noqa: F811
    """Slack and Teams get a new message each time: a reminder or an incident update that
    reads exactly like the page looked like a second incident in the channel."""
    sent, _ = posted
    anomaly = AnomalyFactory(
        series=series_ensure(name="db.connections.active"), severity="critical"
    )
    for action, target in (("slack", "https://hooks.slack.example/T0/B0/x"), ("teams", URL)):
        playbook = ResponsePlaybook.objects.create(name=action, action=action, target=target)
        for kind in ("reminder", "update"):
            perform_action(anomaly, playbook, kind=kind)
    slack_texts = [body["text"] for _, body in sent[:2]]
    assert slack_texts[0].startswith("Reminder: [critical] db.connections.active is abnormal")
    assert slack_texts[1].startswith("Update: [critical] db.connections.active is abnormal")
    assert [_texts(_card(body))[0] for _, body in sent[2:]] == [
        "Reminder: [critical] db.connections.active is abnormal",
        "Update: [critical] db.connections.active is abnormal",
    ]

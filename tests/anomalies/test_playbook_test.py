"""A playbook's test notification: the receiver hears from it before the first incident."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from anomalies.models import ResponseExecution, ResponsePlaybook
from tests.anomalies.test_services import FakeAnswer

pytestmark = pytest.mark.django_db


@pytest.fixture
def posted(monkeypatch):
    """Bodies POSTed to receivers; the receiver answers with `answer[0]`."""
    sent, answer = [], [200]
    monkeypatch.setattr(
        "anomalies.responses.requests.post",
        lambda url, json, **kwargs: sent.append((url, json)) or FakeAnswer(answer[0]),
    )
    return sent, answer


def _test(client, playbook: ResponsePlaybook):
    return client.post(f"/admin/api/phase3/anomaly/playbooks/{playbook.pk}/test")


def test_a_webhook_gets_an_alertmanager_test_alert(client_with_role, posted):
    sent, _ = posted
    hook = ResponsePlaybook.objects.create(
        name="pagerduty", action="webhook", target="https://events.example/v2", series_name="db.*"
    )
    response = _test(client_with_role("admin"), hook)
    assert response.status_code == 200
    assert response.json()["ok"] is True and response.json()["http_status"] == 200
    ((url, body),) = sent
    assert url == "https://events.example/v2"
    assert body["receiver"] == "pagerduty" and body["status"] == "firing"
    (alert,) = body["alerts"]
    # Named apart from real alerts, so a receiver can route or drop it.
    assert alert["labels"]["alertname"] == "Phase3TestNotification"
    assert alert["annotations"]["summary"] == "Test notification from Phase 3 playbook pagerduty"
    assert "No anomaly is behind it" in alert["annotations"]["description"]
    assert "on series matching db.*" in alert["annotations"]["description"]
    assert alert["generatorURL"].endswith(f"/responseplaybook/{hook.pk}/change/")
    # Nothing was paged: no execution is recorded for it.
    assert not ResponseExecution.objects.exists()


@pytest.mark.parametrize(
    "status, error",
    [
        (503, "webhook answered HTTP 503"),
        (404, "webhook answered HTTP 404 (refused: not retried)"),
        (302, "webhook answered HTTP 302 (redirect to nowhere)"),
    ],
)
def test_a_receiver_that_fails_the_test_says_why(client_with_role, posted, status, error):
    _, answer = posted
    answer[0] = status
    hook = ResponsePlaybook.objects.create(name="h", action="webhook", target="https://h.ex/")
    response = _test(client_with_role("admin"), hook)
    # The request was fine: the receiver failed, as a page would have.
    assert response.status_code == 200
    assert response.json()["ok"] is False and response.json()["error"].startswith(error)


def test_slack_and_email_get_a_message_that_says_it_is_a_test(client_with_role, posted, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    sent, _ = posted
    slack = ResponsePlaybook.objects.create(
        name="ops channel", action="slack", target="https://hooks.slack.example/T1"
    )
    email = ResponsePlaybook.objects.create(
        name="dba", action="email", target="dba@example.com", min_severity="critical"
    )
    admin = client_with_role("admin")
    assert _test(admin, slack).json()["ok"] is True
    assert sent[0][1]["text"] == "[test] Test notification from Phase 3 playbook ops channel"
    answer = _test(admin, email).json()
    assert answer["ok"] is True and answer["recipients"] == ["dba@example.com"]
    (message,) = mail.outbox
    assert message.subject == "Test: Test notification from Phase 3 playbook dba"
    assert "real ones come at critical and above" in message.body


def test_a_task_playbook_is_checked_not_started(client_with_role, monkeypatch):
    from celery import current_app

    def refuse(*args, **kwargs):
        raise AssertionError("a test must not start the task")

    monkeypatch.setattr(current_app, "send_task", refuse)
    scale = ResponsePlaybook.objects.create(
        name="scale", action="celery_task", target="scaling.evaluate", arguments={}
    )
    answer = _test(client_with_role("admin"), scale).json()
    assert answer["ok"] is True and answer["started"] is False
    assert answer["task"] == "scaling.evaluate" and answer["kwargs"] == {}
    # A deploy renamed the task since the playbook was saved: the test says so.
    ResponsePlaybook.objects.filter(pk=scale.pk).update(target="scaling.gone")
    answer = _test(client_with_role("admin"), scale).json()
    assert answer["ok"] is False and "no Celery task named 'scaling.gone'" in answer["error"]


def test_only_admins_send_tests(client_with_role, posted):
    hook = ResponsePlaybook.objects.create(name="h", action="webhook", target="https://h.ex/")
    assert _test(client_with_role("operator"), hook).status_code == 403
    assert not posted[0]
    missing = client_with_role("admin").post("/admin/api/phase3/anomaly/playbooks/999999/test")
    assert missing.status_code == 404


def test_the_admin_action_reports_each_playbook(admin_client, posted):
    _, answer = posted
    answer[0] = 503
    hook = ResponsePlaybook.objects.create(name="hook", action="webhook", target="https://h.ex/")
    url = reverse("admin:anomalies_responseplaybook_changelist")
    response = admin_client.post(
        url, {"action": "send_test", "_selected_action": [hook.pk]}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["hook: webhook answered HTTP 503"]

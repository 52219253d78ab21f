"""The on-call's side of responses: real webhook receivers, playbooks changed while pages
are queued, and what every execution records.

Webhooks are sent to a real HTTP server on 127.0.0.1 (in a thread), not a mocked
`requests.post`: redirects, answers and timeouts are what `requests` really does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from anomalies import services
from anomalies.models import ResponseExecution, ResponsePlaybook
from anomalies.responses import ResponseActionError
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory

pytestmark = pytest.mark.django_db


class Receiver:
    """What the local server was sent: (method, path, parsed JSON body or None)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.seen: list[tuple[str, str, dict | None]] = []

    def url(self, path: str) -> str:
        return self.base + path


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _answer(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            receiver.seen.append((method, self.path, json.loads(raw) if raw else None))
            parts = self.path.strip("/").split("/")
            if parts[0] == "redirect":  # /redirect/<code>
                self._answer(int(parts[1]), headers={"Location": "/ok"})
            elif parts[0] == "status":  # /status/<code>: the receiver explains itself
                self._answer(int(parts[1]), b'{"error": "integration key not found"}')
            elif parts[0] == "trickle":  # 200 at once, then a body that takes 20 s
                self.send_response(200)
                self.send_header("Content-Length", "200")
                self.end_headers()
                try:
                    for _ in range(200):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    return
            else:  # accepted, in words rather than JSON
                self._answer(200, b"ok")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_GET(self) -> None:
            self._handle("GET")

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    rec = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(rec)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def _execution(target: str, *, action: str = "webhook", **playbook) -> ResponseExecution:
    anomaly = AnomalyFactory(series=series_ensure(name="svc.checkout.latency"), severity="critical")
    hook = ResponsePlaybook.objects.create(
        name=f"hook {ResponsePlaybook.objects.count()}", action=action, target=target, **playbook
    )
    return ResponseExecution.objects.create(playbook=hook, anomaly=anomaly)


def _run(execution: ResponseExecution) -> ResponseExecution:
    """One attempt, as the task makes it; a retryable failure raises, like in the task."""
    try:
        services.response_execute(execution_id=execution.pk)
    except ResponseActionError:
        pass
    execution.refresh_from_db()
    return execution


@pytest.mark.parametrize("code", [301, 302, 303])
def test_a_redirect_that_would_turn_the_page_into_an_empty_get_is_a_failure(receiver, code):
    # requests follows 301/302/303 with a GET and no body: the receiver's 200 to that GET
    # was recorded as "succeeded" while no alert had reached anyone.
    execution = _run(_execution(receiver.url(f"/redirect/{code}"), max_attempts=4))
    assert [m for m, _, _ in receiver.seen] == ["POST"]  # no body-less GET behind it
    assert execution.status == "failed" and execution.attempts == 1  # retrying cannot help
    assert str(code) in execution.error and "/ok" in execution.error


@pytest.mark.parametrize("code", [307, 308])
def test_a_redirect_that_keeps_the_post_is_followed(receiver, code):
    execution = _run(_execution(receiver.url(f"/redirect/{code}")))
    assert execution.status == "succeeded"
    (first, _, body), (second, path, again) = receiver.seen
    assert (first, second, path) == ("POST", "POST", "/ok") and again == body
    assert body["alerts"][0]["status"] == "firing"


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 422])
def test_a_receiver_that_refuses_the_alert_fails_at_once_with_its_reason(receiver, code):
    # A wrong integration key or a deleted Slack channel answers 4xx every time: retried,
    # the page was "retrying" for 40 minutes before anyone could see it would never go.
    execution = _run(_execution(receiver.url(f"/status/{code}"), max_attempts=5))
    assert execution.status == "failed" and execution.attempts == 1
    assert str(code) in execution.error and "integration key not found" in execution.error
    assert execution.duration_ms is not None and execution.finished_at is not None


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503])
def test_a_receiver_that_is_busy_or_broken_is_retried(receiver, code):
    execution = _execution(receiver.url(f"/status/{code}"), max_attempts=2)
    with pytest.raises(ResponseActionError):
        services.response_execute(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == "retrying" and str(code) in execution.error
    assert _run(execution).status == "failed" and execution.attempts == 2


def test_the_answer_body_is_not_waited_for(receiver):
    # The receiver said 200 at once; what it writes after that is not the page's business.
    # Read in full, a body trickling in for 20 s (or a huge one) held the worker that long.
    started = time.monotonic()
    execution = _run(_execution(receiver.url("/trickle")))
    assert execution.status == "succeeded" and execution.result == {"http_status": 200}
    assert time.monotonic() - started < 5


def test_a_non_json_answer_is_a_success(receiver):
    execution = _run(_execution(receiver.url("/ok")))
    assert execution.status == "succeeded" and execution.result == {"http_status": 200}
    assert receiver.seen[0][2]["version"] == "4"


def test_a_resolved_notice_the_receiver_refuses_is_not_retried(receiver):
    from django.utils import timezone

    execution = _execution(receiver.url("/status/404"))
    ResponseExecution.objects.filter(pk=execution.pk).update(status="succeeded")
    execution.anomaly.ended_at = timezone.now()
    execution.anomaly.save()
    assert services.response_notify_resolved(execution_id=execution.pk) == {"failed": 1}
    execution.refresh_from_db()
    assert "404" in execution.error and execution.resolved_notified_at is None


@pytest.mark.parametrize(
    "change",
    ["disabled", "now critical only", "other series", "false positive"],
)
def test_a_page_still_queued_is_not_sent_once_it_no_longer_applies(receiver, change):
    # The operator disables a noisy playbook (or narrows it, or says the anomaly was a false
    # positive) while its executions wait in the queue or between retries: they went out
    # anyway, up to 40 minutes later.
    execution = _execution(receiver.url("/ok"), min_severity="warning")
    ResponseExecution.objects.filter(pk=execution.pk).update(status="retrying", attempts=1)
    anomaly, playbook = execution.anomaly, execution.playbook
    anomaly.severity = "warning"
    anomaly.save()
    if change == "disabled":
        playbook.enabled = False
    elif change == "now critical only":
        playbook.min_severity = "critical"
    elif change == "other series":
        playbook.series_name = "svc.search.*"
    playbook.save()
    if change == "false positive":
        services.anomaly_mark_false_positive(anomaly_id=anomaly.pk, by="ops")
    assert services.response_execute(execution_id=execution.pk) == {"cancelled": 1}
    execution.refresh_from_db()
    assert receiver.seen == []
    assert execution.status == "cancelled" and execution.attempts == 1
    assert execution.error and execution.finished_at is not None


def test_a_cancelled_page_goes_out_when_its_playbook_matches_again(
    receiver, monkeypatch, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    from anomalies.services.playbooks import queue_responses

    queued = []
    monkeypatch.setattr("anomalies.tasks.execute_response.delay", queued.append)
    execution = _execution(receiver.url("/ok"))
    ResponsePlaybook.objects.filter(pk=execution.playbook_id).update(enabled=False)
    services.response_execute(execution_id=execution.pk)
    ResponsePlaybook.objects.filter(pk=execution.playbook_id).update(enabled=True)
    # The anomaly is still going on at the next scoring run: its page is queued again.
    with django_capture_on_commit_callbacks(execute=True):
        queue_responses({execution.anomaly_id}, now=timezone.now())
    assert ResponseExecution.objects.get(pk=execution.pk).status == "pending"
    assert queued == [execution.pk]
    assert _run(execution).status == "succeeded" and len(receiver.seen) == 1


def test_an_attempt_cut_short_by_the_worker_is_recorded_and_retried(receiver, monkeypatch):
    # The worker's soft time limit (or any unexpected error) interrupts the send: the
    # attempt was not recorded, the task failed, and the execution stayed "pending" for
    # good, which the next scoring run does not queue again (it is not "not queued").
    from celery.exceptions import SoftTimeLimitExceeded

    def interrupted(anomaly, playbook):
        raise SoftTimeLimitExceeded("soft time limit (60 s) exceeded")

    monkeypatch.setattr("anomalies.services.playbooks.perform_action", interrupted)
    execution = _execution(receiver.url("/ok"), max_attempts=2)
    with pytest.raises(ResponseActionError):
        services.response_execute(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == "retrying" and execution.attempts == 1
    assert "time limit" in execution.error and execution.duration_ms is not None
    assert _run(execution).status == "failed" and execution.attempts == 2


def test_an_anomaly_that_escalates_tells_every_receiver_it_is_now_critical(
    receiver, monkeypatch, django_capture_on_commit_callbacks
):
    # A warning pages the team channel; while it lasts it becomes critical. The critical-only
    # playbook fires then; the channel, told "warning", heard nothing until "resolved"
    # arrived with severity=critical under the fingerprint it had seen as a warning.
    from celery import current_app
    from django.utils import timezone

    from anomalies.models import Anomaly
    from anomalies.services.playbooks import queue_responses

    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    anomaly = AnomalyFactory(series=series_ensure(name="svc.checkout.errors"), severity="warning")
    ResponsePlaybook.objects.create(name="team", action="webhook", target=receiver.url("/team"))
    ResponsePlaybook.objects.create(
        name="pager", action="webhook", target=receiver.url("/pager"), min_severity="critical"
    )

    def run() -> list[tuple[str, str, str, str]]:
        before = len(receiver.seen)
        with django_capture_on_commit_callbacks(execute=True):
            queue_responses({anomaly.pk}, now=timezone.now())
        return [
            (path, body["status"], body["alerts"][0]["labels"]["severity"], body["groupKey"])
            for _, path, body in receiver.seen[before:]
        ]

    first = run()
    assert [(p, s, sev) for p, s, sev, _ in first] == [("/team", "firing", "warning")]
    assert run() == []  # grouped: the next match of the same warning sends nothing
    Anomaly.objects.filter(pk=anomaly.pk).update(severity="critical")
    escalated = sorted(run())
    assert [(p, s, sev) for p, s, sev, _ in escalated] == [
        ("/pager", "firing", "critical"),
        ("/team", "firing", "critical"),
    ]
    assert escalated[1][3] == first[0][3]  # the same alert, updated
    assert run() == []
    with django_capture_on_commit_callbacks(execute=True):
        services.anomaly_resolve(anomaly_id=anomaly.pk, by="ops")
    resolved = [(path, b["status"], b["alerts"][0]["labels"]) for _, path, b in receiver.seen[-2:]]
    assert sorted(p for p, _, _ in resolved) == ["/pager", "/team"]
    assert all(s == "resolved" and labels["severity"] == "critical" for _, s, labels in resolved)
    fingerprints = {
        b["alerts"][0]["fingerprint"] for _, path, b in receiver.seen if path == "/team"
    }
    assert len(fingerprints) == 1


@pytest.fixture
def silent_mail_server() -> Iterator[int]:
    """An SMTP port that accepts connections and never says anything (a hung mail relay).

    Each connection is held for HOLD_SECONDS, then dropped, so a client without a timeout
    fails after that long instead of hanging the suite.
    """
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)
            threading.Timer(HOLD_SECONDS, conn.close).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


HOLD_SECONDS = 8.0


def test_the_mail_timeout_is_set_and_shorter_than_the_attempt(settings):
    # Unset, Django's SMTP backend waits on the socket forever: the attempt was held until
    # the worker's time limit killed it.
    from anomalies.tasks import execute_response

    assert settings.EMAIL_TIMEOUT and 0 < settings.EMAIL_TIMEOUT < execute_response.soft_time_limit


@pytest.mark.parametrize("configured", [1.0, None])
def test_a_mail_server_that_never_answers_fails_the_attempt_in_time(
    settings, monkeypatch, silent_mail_server, configured
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", silent_mail_server
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    # A deployment that sets no timeout (None) still gets the action's own.
    settings.EMAIL_TIMEOUT = configured
    monkeypatch.setattr("anomalies.responses.EMAIL_TIMEOUT_SECONDS", 1.0)
    execution = _execution("ops@example.com", action="email", max_attempts=3)
    started = time.monotonic()
    execution = _run(execution)
    assert time.monotonic() - started < HOLD_SECONDS / 2
    assert execution.status == "retrying" and "timed out" in execution.error


@pytest.mark.parametrize("change", ["silence", "disabled", "other series", "false positive"])
def test_an_escalation_notice_still_queued_is_checked_at_send_time_like_the_first_page(
    receiver, monkeypatch, django_capture_on_commit_callbacks, change
):
    # The channel was told "warning"; the anomaly became critical and its notice was
    # queued; then the operator silenced the series (or turned the playbook off, narrowed
    # it, called the anomaly a false positive). The notice went out anyway: only the first
    # page looked at silences and playbooks at send time.
    from django.utils import timezone

    from anomalies.models import Anomaly
    from anomalies.services.playbooks import queue_responses

    notices: list[tuple[int, dict]] = []
    monkeypatch.setattr(
        "anomalies.tasks.notify_escalated.delay", lambda pk, **kw: notices.append((pk, kw))
    )
    execution = _run(_execution(receiver.url("/team"), min_severity="warning"))
    anomaly = execution.anomaly
    Anomaly.objects.filter(pk=anomaly.pk).update(severity="warning")
    ResponseExecution.objects.filter(pk=execution.pk).update(notified_severity="warning")
    Anomaly.objects.filter(pk=anomaly.pk).update(severity="critical")
    with django_capture_on_commit_callbacks(execute=True):
        queue_responses({anomaly.pk}, now=timezone.now())
    assert [pk for pk, _ in notices] == [execution.pk]
    if change == "silence":
        silence = services.silence_anomaly_series(
            anomaly_id=anomaly.pk, minutes=60, comment="fixing it", by="ops"
        )
    elif change == "disabled":
        ResponsePlaybook.objects.filter(pk=execution.playbook_id).update(enabled=False)
    elif change == "other series":
        ResponsePlaybook.objects.filter(pk=execution.playbook_id).update(series_name="svc.x.*")
    else:
        services.anomaly_mark_false_positive(anomaly_id=anomaly.pk, by="ops")
    before = len(receiver.seen)
    pk, kwargs = notices.pop()
    result = services.response_notify_escalated(execution_id=pk, **kwargs)
    assert receiver.seen[before:] == []
    assert result in ({"cancelled": 1}, {"skipped": 1})
    execution.refresh_from_db()
    if change != "silence":
        return
    # Held back, not forgotten: the receiver still knows "warning", and once the silence
    # is over the next scoring run tells it "critical".
    assert result == {"cancelled": 1}
    assert execution.notified_severity == "warning" and f"silence {silence.pk}" in execution.error
    with django_capture_on_commit_callbacks(execute=True):
        queue_responses({anomaly.pk}, now=timezone.now())
    assert notices == []  # still silenced: nothing queued
    services.silence_expire(silence_id=silence.pk)
    with django_capture_on_commit_callbacks(execute=True):
        queue_responses({anomaly.pk}, now=timezone.now())
    pk, kwargs = notices.pop()
    assert services.response_notify_escalated(execution_id=pk, **kwargs) == {"notified": 1}
    ((_, _, body),) = receiver.seen[before:]
    assert body["status"] == "firing" and body["alerts"][0]["labels"]["severity"] == "critical"
    execution.refresh_from_db()
    assert execution.notified_severity == "critical" and execution.error == ""


class _Runs:
    """Scoring runs at chosen moments, each queueing (and, eagerly, sending) responses."""

    def __init__(self, receiver, anomaly, capture) -> None:
        self.receiver, self.anomaly, self.capture = receiver, anomaly, capture

    def at(self, now, *, send: bool = True) -> list[tuple[str, str, str]]:
        from anomalies.models import Anomaly
        from anomalies.services.playbooks import queue_responses

        # The anomaly is still abnormal at each run (as the scoring job keeps it).
        Anomaly.objects.filter(pk=self.anomaly.pk).update(last_seen_at=now)
        before = len(self.receiver.seen)
        with self.capture(execute=send):
            queue_responses({self.anomaly.pk}, now=now)
        return [
            (path, body["status"], body["alerts"][0]["fingerprint"])
            for _, path, body in self.receiver.seen[before:]
        ]


@pytest.fixture
def eager_runs(receiver, monkeypatch, django_capture_on_commit_callbacks):
    from celery import current_app

    monkeypatch.setitem(current_app.conf, "task_always_eager", True)

    def make(anomaly) -> _Runs:
        return _Runs(receiver, anomaly, django_capture_on_commit_callbacks)

    return make


def test_an_unacknowledged_anomaly_is_paged_again_each_repeat_interval(receiver, eager_runs):
    """Alertmanager's repeat_interval: a page nobody took is sent again while the incident
    goes on, the same alert (fingerprint) each time; acknowledging stops it."""
    from datetime import timedelta

    from django.utils import timezone

    anomaly = AnomalyFactory(series=series_ensure(name="svc.checkout.latency"))
    ResponsePlaybook.objects.create(
        name="pager", action="webhook", target=receiver.url("/pager"), repeat_interval_seconds=14400
    )
    ResponsePlaybook.objects.create(name="team", action="webhook", target=receiver.url("/team"))
    runs, t0 = eager_runs(anomaly), timezone.now()
    first = runs.at(t0)
    assert sorted(p for p, _, _ in first) == ["/pager", "/team"]
    assert runs.at(t0 + timedelta(hours=3, minutes=59)) == []
    again = runs.at(t0 + timedelta(hours=4, minutes=1))
    assert again == [("/pager", "firing", first[0][2])]  # the same alert, only the pager
    assert runs.at(t0 + timedelta(hours=4, minutes=2)) == []  # counted from the reminder
    assert runs.at(t0 + timedelta(hours=8, minutes=2)) == [("/pager", "firing", first[0][2])]
    pager = ResponseExecution.objects.get(playbook__name="pager")
    assert pager.reminders == 2 and pager.repeats == 4
    assert ResponseExecution.objects.get(playbook__name="team").reminders == 0
    services.anomaly_acknowledge(anomaly_id=anomaly.pk, by="ops")
    assert runs.at(t0 + timedelta(hours=20)) == []


def test_a_reminder_is_checked_when_it_is_sent_not_only_when_it_is_queued(receiver, eager_runs):
    from datetime import timedelta

    from django.utils import timezone

    anomaly = AnomalyFactory(series=series_ensure(name="svc.checkout.latency"))
    ResponsePlaybook.objects.create(
        name="pager", action="webhook", target=receiver.url("/pager"), repeat_interval_seconds=3600
    )
    runs, t0 = eager_runs(anomaly), timezone.now()
    assert len(runs.at(t0)) == 1
    # Queued an hour on, and acknowledged before the worker sends it.
    with runs.capture(execute=False) as callbacks:
        from anomalies.models import Anomaly
        from anomalies.services.playbooks import queue_responses

        Anomaly.objects.filter(pk=anomaly.pk).update(last_seen_at=t0 + timedelta(minutes=61))
        queue_responses({anomaly.pk}, now=t0 + timedelta(minutes=61))
    assert callbacks
    services.anomaly_acknowledge(anomaly_id=anomaly.pk, by="ops")
    before = len(receiver.seen)
    for callback in callbacks:
        callback()
    assert len(receiver.seen) == before
    assert ResponseExecution.objects.get().reminders == 0


def test_a_reminder_held_back_by_a_silence_goes_out_when_the_silence_ends(receiver, eager_runs):
    """Queued an hour on, and a silence began before the worker sent it: the receiver was
    not told, so the first run after the silence sends it (it used to wait an interval)."""
    from datetime import timedelta

    from django.utils import timezone

    from anomalies.models import Anomaly
    from anomalies.services.playbooks import queue_responses

    anomaly = AnomalyFactory(series=series_ensure(name="svc.checkout.latency"))
    ResponsePlaybook.objects.create(
        name="pager", action="webhook", target=receiver.url("/pager"), repeat_interval_seconds=3600
    )
    runs, t0 = eager_runs(anomaly), timezone.now()
    first = runs.at(t0)
    with runs.capture(execute=False) as callbacks:
        Anomaly.objects.filter(pk=anomaly.pk).update(last_seen_at=t0 + timedelta(minutes=61))
        queue_responses({anomaly.pk}, now=t0 + timedelta(minutes=61))
    assert callbacks
    silence = services.silence_anomaly_series(
        anomaly_id=anomaly.pk, minutes=60, comment="deploying the fix", by="ops"
    )
    before = len(receiver.seen)
    for callback in callbacks:
        callback()
    assert len(receiver.seen) == before
    execution = ResponseExecution.objects.get()
    assert execution.reminders == 0 and f"silence {silence.pk}" in execution.error
    services.silence_expire(silence_id=silence.pk)
    assert runs.at(t0 + timedelta(minutes=63)) == [("/pager", "firing", first[0][2])]
    assert ResponseExecution.objects.get().reminders == 1


def test_an_escalation_restarts_the_repeat_interval(receiver, eager_runs):
    from datetime import timedelta

    from django.utils import timezone

    from anomalies.models import Anomaly

    anomaly = AnomalyFactory(series=series_ensure(name="svc.checkout.latency"))
    ResponsePlaybook.objects.create(
        name="pager", action="webhook", target=receiver.url("/pager"), repeat_interval_seconds=3600
    )
    runs, t0 = eager_runs(anomaly), timezone.now()
    runs.at(t0)
    Anomaly.objects.filter(pk=anomaly.pk).update(severity="critical")
    assert [s for _, s, _ in runs.at(t0 + timedelta(minutes=50))] == ["firing"]  # escalation
    # An hour after the page but ten minutes after the escalation: nothing yet.
    assert runs.at(t0 + timedelta(minutes=61)) == []
    assert len(runs.at(t0 + timedelta(minutes=111))) == 1


def test_an_email_playbook_reminds_by_email(eager_runs, settings):
    from datetime import timedelta

    from django.core import mail
    from django.utils import timezone

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    anomaly = AnomalyFactory(series=series_ensure(name="svc.checkout.latency"))
    ResponsePlaybook.objects.create(
        name="mail", action="email", target="oncall@example.com", repeat_interval_seconds=3600
    )
    runs, t0 = eager_runs(anomaly), timezone.now()
    runs.at(t0)
    runs.at(t0 + timedelta(minutes=30))
    assert len(mail.outbox) == 1
    runs.at(t0 + timedelta(minutes=61))
    assert len(mail.outbox) == 2
    # Says what it is: in an inbox, the same subject again reads as a duplicate.
    assert mail.outbox[1].subject == "Reminder: " + mail.outbox[0].subject
    assert ResponseExecution.objects.get().reminders == 1


@pytest.mark.parametrize(
    ("action", "target", "interval", "field"),
    [
        ("celery_task", "anomalies.retrain", 3600, "repeat_interval_seconds"),
        ("webhook", "https://hooks.example.com/x", 60, "repeat_interval_seconds"),
        ("webhook", "https://hooks.example.com/x", 8 * 86400, "repeat_interval_seconds"),
    ],
)
def test_a_repeat_interval_that_cannot_work_is_refused_naming_the_field(
    client_with_role, action, target, interval, field
):
    client = client_with_role("admin")
    response = client.post(
        "/admin/api/phase3/anomaly/playbooks",
        {"name": "p", "action": action, "target": target, "repeat_interval_seconds": interval},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not ResponsePlaybook.objects.exists()


def _endpoint_slowed_by(cause, endpoint: str):
    """A critical latency anomaly on `endpoint`, two minutes after `cause`, which the
    ranking puts down to it."""
    from datetime import timedelta

    from anomalies.models import RootCauseCandidate

    effect = AnomalyFactory(
        series=series_ensure(name="http.latency.p95", labels={"endpoint": endpoint}),
        severity="critical",
        started_at=cause.started_at + timedelta(minutes=2),
    )
    RootCauseCandidate.objects.create(
        anomaly=effect,
        series=cause.series,
        cause_anomaly=cause,
        rank=1,
        score=1.0,
        lead_seconds=120,
    )
    return effect


def test_a_webhook_receiver_gets_its_incident_update_on_the_alert_it_has(receiver, eager_runs):
    """The update is the cause's alert again (same fingerprint and group key, so PagerDuty
    updates its incident rather than opening one), its description naming the effects."""
    from datetime import timedelta

    from django.utils import timezone

    from anomalies.services.playbooks import queue_resolved_notices, queue_responses

    t0 = timezone.now()
    cause = AnomalyFactory(series=series_ensure(name="db.connections.active"), severity="critical")
    ResponsePlaybook.objects.create(name="pager", action="webhook", target=receiver.url("/pager"))
    runs = eager_runs(cause)
    ((_, _, fingerprint),) = runs.at(t0)
    effect = _endpoint_slowed_by(cause, "/api/feed")
    with runs.capture(execute=True):
        queue_responses({effect.pk}, now=t0 + timedelta(minutes=2))  # held back
    assert runs.at(t0 + timedelta(minutes=3)) == []  # too soon after the page
    ((path, status, again),) = runs.at(t0 + timedelta(minutes=6))
    assert (path, status, again) == ("/pager", "firing", fingerprint)
    body = receiver.seen[-1][2]
    assert body["groupKey"] == receiver.seen[0][2]["groupKey"]
    assert body["alerts"][0]["annotations"]["description"].endswith(
        "; likeliest root cause of 1 other anomaly: http.latency.p95{endpoint=/api/feed}"
    )
    # The held-back effect is in the group as an alert of its own, which a receiver can
    # list on its incident and route by its labels.
    assert [
        (a["status"], a["labels"]["series"], a["labels"].get("endpoint")) for a in body["alerts"]
    ] == [
        ("firing", "db.connections.active", None),
        ("firing", "http.latency.p95", "/api/feed"),
    ]
    assert body["commonLabels"] == {"alertname": "Phase3Anomaly", "severity": "critical"}
    assert runs.at(t0 + timedelta(minutes=12)) == []  # told: nothing new
    # The cause recovers: its group resolves, and says so of the cause alone (an effect
    # that outlives it is paged as its own problem).
    cause.ended_at = t0 + timedelta(minutes=13)
    cause.save(update_fields=["ended_at"])
    with runs.capture(execute=True):
        assert queue_resolved_notices({cause.pk}) == 1
    resolved = receiver.seen[-1][2]
    assert resolved["status"] == "resolved" and resolved["groupKey"] == body["groupKey"]
    assert [a["labels"]["series"] for a in resolved["alerts"]] == ["db.connections.active"]


@pytest.mark.parametrize("refused", [False, True])
def test_an_effect_that_ends_inside_a_firing_group_is_sent_resolved_once(
    receiver, eager_runs, refused
):
    """Alertmanager's `send_resolved` inside a group: an endpoint that recovers while the
    database outage goes on is sent resolved in the group's next notification (on the
    update interval, not at once), and not again; the group's resolution carries the
    effects that ended with the cause. A receiver that refuses that notification (a 4xx)
    is not asked again."""
    from datetime import timedelta

    from django.utils import timezone

    from anomalies.services.playbooks import queue_resolved_notices, queue_responses

    t0 = timezone.now()
    cause = AnomalyFactory(series=series_ensure(name="db.connections.active"), severity="critical")
    ResponsePlaybook.objects.create(name="pager", action="webhook", target=receiver.url("/pager"))
    runs = eager_runs(cause)
    ((_, _, fingerprint),) = runs.at(t0)
    effects = {e: _endpoint_slowed_by(cause, e) for e in ("/api/feed", "/api/cart")}
    with runs.capture(execute=True):
        queue_responses({e.pk for e in effects.values()}, now=t0 + timedelta(minutes=2))

    def alerts(body):
        return [(a["status"], a["labels"].get("endpoint")) for a in body["alerts"]]

    assert runs.at(t0 + timedelta(minutes=6)) == [("/pager", "firing", fingerprint)]
    grown = receiver.seen[-1][2]
    assert alerts(grown) == [("firing", None), ("firing", "/api/feed"), ("firing", "/api/cart")]
    feed = next(a for a in grown["alerts"] if a["labels"].get("endpoint") == "/api/feed")
    # The feed endpoint recovers; the next notice waits for the update interval.
    effects["/api/feed"].ended_at = t0 + timedelta(minutes=8)
    effects["/api/feed"].save(update_fields=["ended_at"])
    assert runs.at(t0 + timedelta(minutes=9)) == []
    if refused:
        ResponsePlaybook.objects.update(target=receiver.url("/status/404"))
        assert runs.at(t0 + timedelta(minutes=12)) == [("/status/404", "firing", fingerprint)]
        assert "integration key not found" in ResponseExecution.objects.get(anomaly=cause).error
        assert runs.at(t0 + timedelta(minutes=18)) == []
        return
    assert runs.at(t0 + timedelta(minutes=12)) == [("/pager", "firing", fingerprint)]
    shrunk = receiver.seen[-1][2]
    assert shrunk["status"] == "firing" and shrunk["groupKey"] == grown["groupKey"]
    assert alerts(shrunk) == [("firing", None), ("firing", "/api/cart"), ("resolved", "/api/feed")]
    resolved_feed = shrunk["alerts"][-1]
    assert resolved_feed["fingerprint"] == feed["fingerprint"] and resolved_feed["endsAt"]
    assert runs.at(t0 + timedelta(minutes=18)) == []  # told once
    # The cart endpoint ends with the database, inside one interval: the group's
    # resolution says so of both.
    effects["/api/cart"].ended_at = t0 + timedelta(minutes=19)
    effects["/api/cart"].save(update_fields=["ended_at"])
    cause.ended_at = t0 + timedelta(minutes=19)
    cause.save(update_fields=["ended_at"])
    with runs.capture(execute=True):
        assert queue_resolved_notices({cause.pk}) == 1
    closed = receiver.seen[-1][2]
    assert closed["status"] == "resolved"
    assert alerts(closed) == [("resolved", None), ("resolved", "/api/cart")]


def test_a_group_by_group_keeps_one_group_key_and_fires_while_any_member_does(receiver, eager_runs):
    """Under `group_by: [service]` the webhook's group is the service's: its key and group
    labels name it, so the page, the update that adds a member, the first member's
    resolution and the next member's page are one incident to a receiver that keys on the
    group (PagerDuty's dedup key). The first member's resolution still carries the member
    that goes on, firing, so the receiver does not close the incident in between."""
    from datetime import timedelta

    from django.utils import timezone

    from anomalies.services.playbooks import queue_resolved_notices, queue_responses

    t0 = timezone.now()
    ResponsePlaybook.objects.create(
        name="pager", action="webhook", target=receiver.url("/pager"), group_by=["service"]
    )
    cart = AnomalyFactory(
        series=series_ensure(
            name="http.latency.p95", labels={"service": "checkout", "endpoint": "/cart"}
        ),
        severity="critical",
        started_at=t0,
    )
    runs = eager_runs(cart)
    ((_, _, cart_fingerprint),) = runs.at(t0)
    page = receiver.seen[-1][2]
    key = '{}:{alertname="Phase3Anomaly", service="checkout"}'
    assert page["groupKey"] == key
    assert page["groupLabels"] == {"alertname": "Phase3Anomaly", "service": "checkout"}
    errors = AnomalyFactory(
        series=series_ensure(name="http.errors.ratio", labels={"service": "checkout"}),
        severity="critical",
        started_at=t0 + timedelta(minutes=1),
    )
    with runs.capture(execute=True):
        queue_responses({errors.pk}, now=t0 + timedelta(minutes=1))
    assert len(receiver.seen) == 1  # held back in the group

    def alerts(body):
        return [(a["status"], a["labels"]["series"]) for a in body["alerts"]]

    assert runs.at(t0 + timedelta(minutes=6)) == [("/pager", "firing", cart_fingerprint)]
    grown = receiver.seen[-1][2]
    assert grown["groupKey"] == key
    assert alerts(grown) == [("firing", "http.latency.p95"), ("firing", "http.errors.ratio")]
    # The cart endpoint recovers while the error ratio goes on.
    cart.ended_at = t0 + timedelta(minutes=9)
    cart.save(update_fields=["ended_at"])
    before = len(receiver.seen)
    with runs.capture(execute=True):
        assert queue_resolved_notices({cart.pk}) == 1
        queue_responses({errors.pk}, now=t0 + timedelta(minutes=10))
    sent = {body["alerts"][0]["labels"]["series"]: body for _, _, body in receiver.seen[before:]}
    assert set(sent) == {"http.latency.p95", "http.errors.ratio"}
    resolution, next_page = sent["http.latency.p95"], sent["http.errors.ratio"]
    assert resolution["groupKey"] == next_page["groupKey"] == key
    assert resolution["status"] == "firing"
    assert alerts(resolution) == [("resolved", "http.latency.p95"), ("firing", "http.errors.ratio")]
    assert next_page["status"] == "firing"
    assert alerts(next_page) == [("firing", "http.errors.ratio")]
    # The last member ends: the group resolves.
    errors.ended_at = t0 + timedelta(minutes=12)
    errors.save(update_fields=["ended_at"])
    with runs.capture(execute=True):
        assert queue_resolved_notices({errors.pk}) == 1
    closed = receiver.seen[-1][2]
    assert closed["groupKey"] == key and closed["status"] == "resolved"
    assert alerts(closed) == [("resolved", "http.errors.ratio")]


@pytest.mark.parametrize("interval", [10, 2 * 86400, "soon"])
def test_an_update_interval_out_of_range_is_refused_naming_the_field(client_with_role, interval):
    response = client_with_role("admin").post(
        "/admin/api/phase3/anomaly/playbooks",
        {
            "name": "p",
            "action": "webhook",
            "target": "https://hooks.example.com/x",
            "update_interval_seconds": interval,
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "update_interval_seconds" in response.json()
    assert not ResponsePlaybook.objects.exists()

"""Actuators that act: a real HTTP receiver, a real Celery worker on Redis, a mocked k8s API."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import threading
import time
import types
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import pytest

from scaling.actuators import (
    SIGNATURE_HEADER,
    WEBHOOK_TIME_BUDGET_SECONDS,
    ActuationRequest,
    ActuatorError,
    CeleryPoolActuator,
    KubernetesActuator,
    WebhookActuator,
    actuator_for,
    config_problems,
)

ROOT = Path(__file__).resolve().parents[2]


def request(desired: int = 6, **config) -> ActuationRequest:
    return ActuationRequest(resource="web", current_units=4, desired_units=desired, config=config,
                            payload={"resource": "web", "desired_units": desired})  # fmt: skip


class Receiver:
    """A local HTTP server answering from a script of (status, delay[, headers[, body]])."""

    def __init__(
        self,
        script: list[tuple[int, float] | tuple[int, float, dict] | tuple[int, float, dict, bytes]],
    ) -> None:
        self.script, self.seen, self.gets = list(script), [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # a login page, say: answers 200 to anything
                outer.gets.append(self.path)
                self.send_response(200)
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.seen.append((dict(self.headers), body))
                status, delay, *rest = outer.script.pop(0) if outer.script else (200, 0.0)
                headers = rest[0] if rest else {}
                answer = rest[1] if len(rest) > 1 else b""
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if answer:
                    self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/scale"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("SCALING_WEBHOOK_SECRET", "s3cret")
    return "s3cret"


def test_webhook_signs_the_exact_body(secret):
    receiver = Receiver([(200, 0.0)])
    try:
        result = WebhookActuator().apply(request(url=receiver.url))
    finally:
        receiver.close()
    [(headers, body)] = receiver.seen
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    assert b'"desired_units":6' in body
    assert result.applied_units is None  # an empty answer reports no size: the request stands


def test_webhook_reports_the_units_its_receiver_answers_with(secret):
    receiver = Receiver([(200, 0.0, {"Content-Type": "application/json"}, b'{"units": 5}')])
    try:
        result = WebhookActuator().apply(request(6, url=receiver.url))
    finally:
        receiver.close()
    assert result.applied_units == 5 and "units=5" in result.detail and result.warnings == ()


@pytest.mark.parametrize(
    "answer", [b'{"units": -1}', b'{"units": 2.5}', b'{"units": "5"}', b'{"units": true}',
               b'{"units": null}', b'{"units": 100000000000}'],
)  # fmt: skip
def test_a_webhook_answer_whose_units_is_no_size_is_ignored_with_a_warning(secret, answer):
    receiver = Receiver([(200, 0.0, {"Content-Type": "application/json"}, answer)])
    try:
        result = WebhookActuator().apply(request(6, url=receiver.url))
    finally:
        receiver.close()
    assert result.applied_units is None
    [warning] = result.warnings
    assert "units" in warning and "non-negative integer" in warning


@pytest.mark.parametrize("answer", [b"ok", b'{"status": "scaled"}', b"[5]", b""])
def test_a_webhook_answer_without_units_reports_nothing_and_warns_of_nothing(secret, answer):
    receiver = Receiver([(200, 0.0, {}, answer)])
    try:
        result = WebhookActuator().apply(request(6, url=receiver.url))
    finally:
        receiver.close()
    assert result.applied_units is None and result.warnings == ()


def test_webhook_retries_server_errors_then_succeeds(secret):
    receiver = Receiver([(503, 0.0), (502, 0.0), (200, 0.0)])
    try:
        WebhookActuator().apply(request(url=receiver.url, retries=3, backoff_seconds=0.01))
    finally:
        receiver.close()
    assert len(receiver.seen) == 3


def test_webhook_gives_up_after_retries_and_on_timeout(secret):
    receiver = Receiver([(500, 0.0)] * 5)
    try:
        with pytest.raises(ActuatorError, match="500"):
            WebhookActuator().apply(request(url=receiver.url, retries=1, backoff_seconds=0.01))
        assert len(receiver.seen) == 2
        slow = Receiver([(200, 1.5)])
        try:
            with pytest.raises(ActuatorError, match=r"Timeout|timed out"):
                WebhookActuator().apply(request(url=slow.url, retries=0, timeout_seconds=0.3))
        finally:
            slow.close()
    finally:
        receiver.close()


def test_a_redirected_webhook_is_a_failure_not_an_executed_change(secret):
    # requests follows a 302 from a POST with a GET (body and signature dropped): the
    # receiver never got the decision, yet the login page's 200 read as success.
    receiver = Receiver([(302, 0.0, {"Location": "/login"})])
    try:
        with pytest.raises(ActuatorError, match=r"HTTP 302.*/login"):
            WebhookActuator().apply(request(url=receiver.url))
    finally:
        receiver.close()
    assert len(receiver.seen) == 1 and receiver.gets == []


def test_webhook_does_not_wait_for_a_receivers_retry_after(secret):
    receiver = Receiver([(503, 0.0, {"Retry-After": "3600"}), (200, 0.0)])
    started = time.monotonic()
    try:
        WebhookActuator().apply(request(url=receiver.url, retries=1, backoff_seconds=0.01))
    finally:
        receiver.close()
    assert len(receiver.seen) == 2
    assert time.monotonic() - started < WEBHOOK_TIME_BUDGET_SECONDS


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("webhook", {"retries": "three"}, "retries"),
        ("webhook", {"timeout_seconds": 0}, "timeout_seconds"),
        ("webhook", {"url": "ftp://x"}, "url"),
        ("webhook", {"retries": 10, "timeout_seconds": 30}, "can take"),  # over the budget
        ("celery", {"mode": "turbo"}, "mode"),
        ("celery", {"destination": [1]}, "destination"),
        ("kubernetes", {"deployment": 5}, "deployment"),
        ("dry_run", ["not", "an", "object"], "object"),
    ],
)
def test_a_bad_actuator_config_is_named_and_raised_as_an_actuator_error(kind, config, field):
    problems = config_problems(kind, config)
    assert problems and field in " ".join(problems)
    with pytest.raises(ActuatorError, match=field):
        actuator_for(kind).apply(request(**config) if isinstance(config, dict) else
                                 ActuationRequest("web", 4, 6, config, {}))  # fmt: skip


def test_the_default_actuator_configs_are_valid():
    for kind in ("dry_run", "webhook", "celery", "kubernetes"):
        assert config_problems(kind, {}) == []


def test_webhook_needs_its_secret(monkeypatch):
    monkeypatch.delenv("SCALING_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ActuatorError, match="SCALING_WEBHOOK_SECRET"):
        WebhookActuator().apply(request(url="http://127.0.0.1:9/x"))


def test_kubernetes_patches_the_deployment_scale():
    api = mock.Mock()
    api.patch_namespaced_deployment_scale.return_value = types.SimpleNamespace(
        spec=types.SimpleNamespace(replicas=7)
    )
    result = KubernetesActuator(apps_api=api).apply(request(7, deployment="web", namespace="prod"))
    api.patch_namespaced_deployment_scale.assert_called_once_with(
        name="web", namespace="prod", body={"spec": {"replicas": 7}}
    )
    assert result.applied_units == 7


def test_kubernetes_reports_the_replicas_the_api_set_not_the_request():
    api = mock.Mock()
    api.patch_namespaced_deployment_scale.return_value = types.SimpleNamespace(
        spec=types.SimpleNamespace(replicas=5)  # a policy capped the request
    )
    assert KubernetesActuator(apps_api=api).apply(request(7, deployment="web")).applied_units == 5
    api.patch_namespaced_deployment_scale.return_value = types.SimpleNamespace(spec=None)
    assert (
        KubernetesActuator(apps_api=api).apply(request(7, deployment="web")).applied_units is None
    )


def test_the_dry_run_reports_no_size():
    assert actuator_for("dry_run").apply(request(7)).applied_units is None


def test_kubernetes_uses_the_official_client_and_reports_api_errors(monkeypatch):
    apps = mock.Mock()
    apps.patch_namespaced_deployment_scale.side_effect = RuntimeError("(403) Forbidden")
    fake = types.ModuleType("kubernetes")
    fake.client = types.SimpleNamespace(AppsV1Api=mock.Mock(return_value=apps))
    fake.config = types.SimpleNamespace(
        load_incluster_config=mock.Mock(), load_kube_config=mock.Mock()
    )
    monkeypatch.setitem(sys.modules, "kubernetes", fake)
    with pytest.raises(ActuatorError, match="403"):
        KubernetesActuator().apply(request(3, deployment="web"))
    fake.config.load_incluster_config.assert_called_once()


def test_kubernetes_without_the_package_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(ActuatorError, match="not installed"):
        KubernetesActuator().apply(request(3, deployment="web"))


@pytest.fixture
def celery_worker(redis_url, request):
    """A real prefork worker on Redis, on a private queue, with a 1-process pool
    (or ``--autoscale=MAX,1`` when the test is parametrised indirectly with MAX)."""
    from celery import Celery

    autoscale = getattr(request, "param", None)
    sizing = ["--autoscale", f"{autoscale},1"] if autoscale else ["-c", "1"]
    name = f"scalingtest-{uuid.uuid4().hex[:8]}@localhost"
    env = {**os.environ, "CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.scaling.celery_worker_app", "worker", "-P", "prefork", *sizing,
         "-Q", f"q-{name}", "-n", name, "--without-gossip", "--without-mingle",
         "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app = Celery(broker=redis_url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if app.control.ping(destination=[name], timeout=1.0):
                break
            if proc.poll() is not None:
                pytest.fail("the Celery worker exited during start-up")
        else:
            pytest.fail("the Celery worker did not answer within 120 s")
        yield app, name
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        app.close()


def settled_size(actuator: CeleryPoolActuator, name: str, expected: int) -> int:
    """Pool processes start asynchronously after the reply: wait a little for them."""
    deadline = time.monotonic() + 20
    size = actuator.pool_sizes([name])[name]
    while size != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        size = actuator.pool_sizes([name])[name]
    return size


def test_celery_pool_grows_and_shrinks_a_real_worker(celery_worker):
    app, name = celery_worker
    actuator = CeleryPoolActuator(app=app, timeout=5.0)
    assert actuator.pool_sizes([name]) == {name: 1}
    grown = actuator.apply(request(3, destination=name))
    assert "1->3" in grown.detail and grown.applied_units == 3  # the size it set, per worker
    assert settled_size(actuator, name, 3) == 3
    actuator.apply(request(2, destination=name))
    assert settled_size(actuator, name, 2) == 2


@pytest.mark.parametrize("celery_worker", [2], indirect=True)
def test_celery_autoscale_sets_the_maximum_of_a_real_autoscaling_worker(celery_worker):
    app, name = celery_worker
    actuator = CeleryPoolActuator(app=app, timeout=5.0)
    result = actuator.apply(request(5, destination=name, mode="autoscale", autoscale_min=1))
    stats = app.control.inspect(destination=[name], timeout=5.0).stats()
    assert stats[name]["autoscaler"]["max"] == 5
    assert result.applied_units is None  # a maximum, not a running size: nothing reported


def test_celery_autoscale_on_a_fixed_pool_worker_is_a_failure(celery_worker):
    app, name = celery_worker
    with pytest.raises(ActuatorError, match=r"(?i)autoscale"):
        CeleryPoolActuator(app=app, timeout=5.0).apply(
            request(3, destination=name, mode="autoscale")
        )


def test_celery_actuator_without_a_worker_fails_clearly(redis_url):
    from celery import Celery

    app = Celery(broker=redis_url)
    with pytest.raises(ActuatorError, match="no worker answered"):
        CeleryPoolActuator(app=app, timeout=0.5).apply(request(2, destination="nobody@nowhere"))
    app.close()

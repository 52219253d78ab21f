"""Actuators that act: a real HTTP receiver, a real Celery worker on Redis, a mocked k8s API."""

from __future__ import annotations

import contextlib
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


def start_worker(name: str, sizing: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.scaling.celery_worker_app", "worker",
         "-P", "prefork", *sizing, "-Q", f"q-{name}", "-n", name, "--without-gossip",
         "--without-mingle", "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@contextlib.contextmanager
def running_workers(redis_url: str, count: int, sizing: list[str]):
    """``count`` real prefork workers on Redis, each on a private queue; yields the
    remote-control app and the workers' names once every one answers a ping."""
    from celery import Celery

    names = [f"scalingtest-{uuid.uuid4().hex[:8]}@localhost" for _ in range(count)]
    env = {**os.environ, "CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url}
    procs = [start_worker(name, sizing, env) for name in names]
    app = Celery(broker=redis_url)
    try:
        deadline = time.monotonic() + 120
        waiting = set(names)
        while waiting and time.monotonic() < deadline:
            for reply in app.control.ping(destination=sorted(waiting), timeout=1.0) or []:
                waiting -= set(reply)
            if any(proc.poll() is not None for proc in procs):
                pytest.fail("a Celery worker exited during start-up")
        if waiting:
            pytest.fail(f"Celery worker(s) {sorted(waiting)} did not answer within 120 s")
        yield app, names
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        app.close()


@pytest.fixture
def celery_worker(redis_url, request):
    """A real prefork worker on Redis, on a private queue, with a 1-process pool
    (or ``--autoscale=MAX,1`` when the test is parametrised indirectly with MAX)."""
    autoscale = getattr(request, "param", None)
    sizing = ["--autoscale", f"{autoscale},1"] if autoscale else ["-c", "1"]
    with running_workers(redis_url, 1, sizing) as (app, [name]):
        yield app, name


@pytest.fixture
def two_celery_workers(redis_url):
    """Two real prefork workers with a 1-process pool each."""
    with running_workers(redis_url, 2, ["-c", "1"]) as (app, names):
        yield app, names


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
    assert "1->3" in grown.detail and grown.applied_units == 3  # the total, on one worker
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


def test_celery_pool_spreads_its_total_over_two_real_workers(two_celery_workers):
    app, names = two_celery_workers
    actuator = CeleryPoolActuator(app=app, timeout=5.0)
    assert actuator.pool_sizes(names) == dict.fromkeys(names, 1)
    grown = actuator.apply(request(5, destination=names))
    assert grown.applied_units == 5 and grown.warnings == ()
    first, second = names if names[0] < names[1] else names[::-1]  # ties go by name
    assert settled_size(actuator, first, 3) == 3 and settled_size(actuator, second, 2) == 2
    # Fewer units than workers: each keeps one process, and the total that runs is reported.
    shrunk = actuator.apply(request(1, destination=names))
    assert shrunk.applied_units == 2
    assert any("each keeps at least 1" in w for w in shrunk.warnings)
    assert [settled_size(actuator, name, 1) for name in names] == [1, 1]


def fake_celery(sizes: dict[str, int], *, refuse: tuple[str, ...] = (),
                silent: tuple[str, ...] = ()) -> mock.Mock:  # fmt: skip
    """A Celery app mocked at its remote-control boundary: ``inspect().stats()`` answers for
    the workers of ``sizes`` asked for, a pool change replies ok (and changes ``sizes``), or
    an error for ``refuse``, or nothing (an empty list) for ``silent``."""
    app = mock.Mock()

    def inspect(destination=None, timeout=None):
        answering = {
            worker: {"pool": {"max-concurrency": size, "processes": list(range(size))}}
            for worker, size in sizes.items()
            if destination is None or worker in destination
        }
        return mock.Mock(stats=mock.Mock(return_value=answering or None))

    def change(sign):
        def send(n, destination, reply, timeout):
            [worker] = destination
            if worker in silent:
                return []
            if worker in refuse:
                return [{worker: {"error": "Can't shrink pool. All processes busy!"}}]
            sizes[worker] += sign * n
            return [{worker: {"ok": "pool will change"}}]

        return send

    app.control.inspect.side_effect = inspect
    app.control.pool_grow.side_effect = change(+1)
    app.control.pool_shrink.side_effect = change(-1)
    app.control.autoscale.side_effect = lambda mx, mn, destination, **kw: [
        {destination[0]: {"ok": f"autoscale now max={mx} min={mn}"}}
    ]
    return app


def sent(method: mock.Mock) -> dict[str, int]:
    """Each worker's ``n`` in the calls of a mocked ``pool_grow``/``pool_shrink``."""
    calls = {}
    for call in method.call_args_list:
        [worker] = call.kwargs["destination"]
        assert worker not in calls, f"{worker} was sent two changes"
        calls[worker] = call.args[0]
    return calls


def test_celery_pool_units_are_a_total_spread_evenly_over_the_workers():
    app = fake_celery({"a@h": 1, "b@h": 4, "c@h": 2})
    result = CeleryPoolActuator(app=app).apply(request(7))
    # 7 over 3 workers is 3 + 2 + 2; the 3 stays on b, which has 4 now (fewest moves). Per
    # worker, the old actuator grew each pool to 7: 21 processes recorded as 7.
    assert sent(app.control.pool_grow) == {"a@h": 1}
    assert sent(app.control.pool_shrink) == {"b@h": 1}
    assert result.applied_units == 7 and result.warnings == ()
    assert "7 processes over 3 worker(s)" in result.detail


def test_celery_pool_with_fewer_units_than_workers_keeps_one_process_each_and_says_so():
    app = fake_celery({"a@h": 3, "b@h": 3, "c@h": 3})
    result = CeleryPoolActuator(app=app).apply(request(2))
    assert sent(app.control.pool_shrink) == {"a@h": 2, "b@h": 2, "c@h": 2}
    assert result.applied_units == 3  # what runs, not the 2 requested
    [warning] = result.warnings
    assert "2 unit(s) requested over 3 worker(s)" in warning and "so 3 run" in warning


def test_a_named_worker_that_does_not_answer_gets_no_share_and_is_named():
    app = fake_celery({"a@h": 1, "b@h": 1, "other@h": 5})
    result = CeleryPoolActuator(app=app).apply(request(4, destination=["a@h", "b@h", "gone@h"]))
    assert app.control.inspect.call_args.kwargs["destination"] == ["a@h", "b@h", "gone@h"]
    assert sent(app.control.pool_grow) == {"a@h": 1, "b@h": 1}  # other@h is not ours
    assert result.applied_units == 4
    [warning] = result.warnings
    assert "gone@h did not answer" in warning


def test_a_worker_that_refuses_or_does_not_reply_is_counted_at_its_old_size():
    app = fake_celery({"a@h": 4, "b@h": 1, "c@h": 1}, refuse=("a@h",), silent=("c@h",))
    result = CeleryPoolActuator(app=app).apply(request(6))
    # Asked 2 + 2 + 2: a refused to shrink (4 run there), c was silent (1), b grew to 2.
    assert result.applied_units == 4 + 2 + 1
    assert len(result.warnings) == 2
    assert any("a@h kept 4" in w and "busy" in w for w in result.warnings)
    assert any("c@h kept 1" in w and "no reply" in w for w in result.warnings)


def test_a_worker_that_stopped_between_the_size_check_and_its_change_is_not_counted():
    # b answered inspect().stats() with 1 process, then stopped before its pool_grow: it
    # runs nothing, as a worker that does not answer stats at all, yet it was counted at 1.
    sizes = {"a@h": 1, "b@h": 1}
    app = fake_celery(sizes)
    grow = app.control.pool_grow.side_effect

    def stop_b_first(n, destination, reply, timeout):
        if destination == ["b@h"]:
            del sizes["b@h"]  # stopped: no reply, and no answer to stats any more
            return []
        return grow(n, destination=destination, reply=reply, timeout=timeout)

    app.control.pool_grow.side_effect = stop_b_first
    result = CeleryPoolActuator(app=app).apply(request(4))
    assert sizes == {"a@h": 2}
    assert result.applied_units == 2  # before: 3, b's old process counted
    assert any("b@h" in w and "not counted" in w for w in result.warnings)


def test_a_silent_worker_that_still_answers_stats_is_counted_at_its_old_size():
    app = fake_celery({"a@h": 1, "b@h": 1}, silent=("b@h",))
    result = CeleryPoolActuator(app=app).apply(request(4))
    assert result.applied_units == 2 + 1
    assert any("b@h kept 1" in w and "no reply" in w for w in result.warnings)


def test_a_pool_change_every_worker_refuses_fails_the_decision():
    app = fake_celery({"a@h": 4, "b@h": 4}, refuse=("a@h", "b@h"))
    with pytest.raises(ActuatorError, match="no worker applied its change"):
        CeleryPoolActuator(app=app).apply(request(2))


def test_celery_autoscale_spreads_the_total_as_each_workers_maximum():
    app = fake_celery({"a@h": 1, "b@h": 1})
    actuator = CeleryPoolActuator(app=app)
    result = actuator.apply(request(5, mode="autoscale", autoscale_min=2))
    sent_args = {c.kwargs["destination"][0]: c.args for c in app.control.autoscale.call_args_list}
    assert sent_args == {"a@h": (3, 2), "b@h": (2, 2)}
    assert result.applied_units is None
    app.control.autoscale.reset_mock()
    actuator.apply(request(1, mode="autoscale", autoscale_min=2))
    sent_args = {c.kwargs["destination"][0]: c.args for c in app.control.autoscale.call_args_list}
    assert sent_args == {"a@h": (1, 1), "b@h": (1, 1)}  # a minimum never above the maximum

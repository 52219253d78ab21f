"""Actuators: the code that really changes capacity.

Each takes the resource and the desired number of units and either succeeds or
raises :class:`ActuatorError` with a message an operator can act on. They hold
no ORM code: the service records what they did.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .engine.spread import MIN_PER_MEMBER, Spread, spread_units

SIGNATURE_HEADER = "X-Phase3-Signature"
# A webhook's worst case (every attempt timing out, plus the backoff sleeps between them)
# must end well inside the scaling.evaluate task's soft time limit (50 s).
WEBHOOK_TIME_BUDGET_SECONDS = 40.0
RETRY_BACKOFF_MAX_SECONDS = 10.0
# The largest size a decision and a resource can store (PositiveIntegerField): a receiver's
# larger answer would fail the write after the change was made, leaving the claim behind.
MAX_UNITS = 2**31 - 1


class ActuatorError(RuntimeError):
    """The change could not be applied (the message says why)."""


def _number(low: float, high: float, *, integer: bool = False, low_open: bool = False):
    def check(value: Any) -> str | None:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            return "must be an integer" if integer else "must be a number"
        if value < low or (low_open and value == low) or value > high:
            return f"must lie in {'(' if low_open else '['}{low:g}, {high:g}]"
        return None

    return check


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _url(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if value and not value.startswith(("http://", "https://")):
        return "must be an http:// or https:// URL"
    return None


def _destination(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return None
    return "must be a worker name or a list of worker names"


def _one_of(*choices: str):
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


CONFIG_FIELDS: dict[str, dict[str, Callable[[Any], str | None]]] = {
    "dry_run": {},
    "webhook": {
        "url": _url,
        "secret_env": _string,
        "timeout_seconds": _number(0, 30, low_open=True),
        "retries": _number(0, 10, integer=True),
        "backoff_seconds": _number(0, RETRY_BACKOFF_MAX_SECONDS),
    },
    "celery": {
        "destination": _destination,
        "mode": _one_of("pool", "autoscale"),
        "autoscale_min": _number(0, 10_000, integer=True),
    },
    "kubernetes": {"deployment": _string, "namespace": _string},
}


def webhook_worst_case_seconds(retries: int, timeout: float, backoff: float) -> float:
    """Every attempt timing out plus urllib3's sleeps (none before the first retry, then
    ``backoff x 2^(n-1)`` capped at RETRY_BACKOFF_MAX_SECONDS); Retry-After is ignored."""
    sleeps = sum(
        min(backoff * 2 ** (n - 1), RETRY_BACKOFF_MAX_SECONDS) for n in range(2, retries + 1)
    )
    return (retries + 1) * timeout + sleeps


def config_problems(kind: str, config: Any) -> list[str]:
    """What is wrong with ``config`` for actuator ``kind`` (empty when it is usable)."""
    if not isinstance(config, dict):
        return ["must be an object"]
    fields = CONFIG_FIELDS.get(kind)
    if fields is None:
        return [f"unknown actuator {kind!r}"]
    problems = [
        f"{key} {problem}"
        for key, check in fields.items()
        if key in config and (problem := check(config[key])) is not None
    ]
    if kind == "webhook" and not problems:
        worst = webhook_worst_case_seconds(
            int(config.get("retries", 3)),
            float(config.get("timeout_seconds", 5.0)),
            float(config.get("backoff_seconds", 0.5)),
        )
        if worst > WEBHOOK_TIME_BUDGET_SECONDS:
            problems.append(
                f"retries, timeout_seconds and backoff_seconds can take {worst:.0f}s, more "
                f"than the {WEBHOOK_TIME_BUDGET_SECONDS:.0f}s a scaling run allows"
            )
    return problems


def require_valid_config(kind: str, config: Any) -> dict[str, Any]:
    """``config`` if usable by actuator ``kind``, else ActuatorError naming the problems."""
    problems = config_problems(kind, config)
    if problems:
        raise ActuatorError(f"{kind} actuator: actuator_config: " + "; ".join(problems))
    return config


@dataclass(frozen=True)
class ActuationResult:
    """What an actuator did.

    ``applied_units`` is the size the target system says it now runs (the replicas a
    Deployment was set to, the size a webhook receiver answered with), or None when the
    actuator cannot know it: outcomes are judged on this size, since the requested one may
    never have run (bounds moved, the orchestrator clamped, the receiver chose another).
    ``warnings`` are recorded on the decision (an answer that was ignored, say).
    """

    applied_units: int | None
    detail: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActuationRequest:
    resource: str
    current_units: int
    desired_units: int
    config: dict[str, Any]
    payload: dict[str, Any]  # the decision as JSON (sent by the webhook)


class Actuator(Protocol):
    def apply(self, request: ActuationRequest) -> ActuationResult: ...


class DryRunActuator:
    """Records only: the decision row is the whole effect."""

    def apply(self, request: ActuationRequest) -> ActuationResult:
        require_valid_config("dry_run", request.config)
        return ActuationResult(None, "dry run: nothing changed")


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC>`` of the exact body bytes, GitHub-style, so receivers can verify."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookActuator:
    """POST the decision as JSON with an HMAC signature; retries on 5xx and connection errors.

    The secret is read from the environment variable named in ``secret_env`` so that
    it never sits in the database or the admin.
    """

    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session

    def apply(self, request: ActuationRequest) -> ActuationResult:
        cfg = require_valid_config("webhook", request.config)
        url = cfg.get("url")
        if not url:
            raise ActuatorError("webhook actuator: actuator_config.url is not set")
        secret_env = cfg.get("secret_env", "SCALING_WEBHOOK_SECRET")
        secret = os.environ.get(secret_env, "")
        if not secret:
            raise ActuatorError(f"webhook actuator: environment variable {secret_env} is empty")
        body = json.dumps(request.payload, sort_keys=True, separators=(",", ":")).encode()
        retries = int(cfg.get("retries", 3))
        session = self.session or requests.Session()
        retry = Retry(
            total=retries, connect=retries, read=retries, status=retries,
            backoff_factor=float(cfg.get("backoff_seconds", 0.5)),
            status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"POST"}),
            raise_on_status=False, backoff_max=RETRY_BACKOFF_MAX_SECONDS,
            # A receiver's Retry-After (an hour, say) would outlast the task's time limit:
            # retries wait the configured backoff only.
            respect_retry_after_header=False,
        )  # fmt: skip
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        try:
            response = session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)},
                timeout=float(cfg.get("timeout_seconds", 5.0)),
                # Followed, a 301/302/303 turns the POST into a GET without the body and its
                # signature: the decision never arrives, yet the page it lands on says 200.
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise ActuatorError(f"webhook {url}: {type(exc).__name__}: {exc}") from exc
        if response.is_redirect or response.is_permanent_redirect:
            location = response.headers.get("Location", "")
            raise ActuatorError(
                f"webhook {url}: HTTP {response.status_code} redirect to {location[:200]!r} "
                "(not followed: set url to the receiver's final address)"
            )
        if response.status_code >= 300:
            raise ActuatorError(f"webhook {url}: HTTP {response.status_code} after retries")
        units, warning = webhook_answer_units(response)
        detail = f"webhook {url}: HTTP {response.status_code}"
        if units is not None:
            detail += f", receiver reports units={units}"
        return ActuationResult(units, detail, (warning,) if warning else ())


def webhook_answer_units(response: requests.Response) -> tuple[int | None, str | None]:
    """The size a receiver says it applied (``{"units": N}`` in its JSON answer), and a
    warning when it sent one that cannot be a size.

    Optional, so an empty or non-JSON answer (a plain 200/204) reports nothing and keeps the
    requested size. A ``units`` that is not a non-negative integer (``"5"``, ``5.5``, ``-1``,
    ``true``) is ignored rather than trusted: a wrong size would be written as the resource's
    and judged on, which is worse than the requested one.
    """
    try:
        answer = response.json()
    except ValueError:
        return None, None
    if not isinstance(answer, dict) or "units" not in answer:
        return None, None
    units = answer["units"]
    if isinstance(units, bool) or not isinstance(units, int) or not 0 <= units <= MAX_UNITS:
        return None, (
            f"webhook answer ignored: units must be a non-negative integer (at most "
            f"{MAX_UNITS}), got {units!r}"[:300]
        )
    return units, None


class CeleryPoolActuator:
    """Grow or shrink this project's Celery worker pools through remote control.

    A resource's units are the *total* of pool processes over the workers that answer
    (those named in ``destination``, or every worker without one), as a Deployment's
    replicas are: the decision, its cost and its outcome are computed on that total. It is
    spread as evenly as possible (``engine.spread_units``), every worker keeping at least one
    process: with fewer units than workers each runs one, and that larger total is reported.

    ``mode="pool"`` sends each worker ``pool_grow``/``pool_shrink`` by the difference between
    its share and its pool's real size (read with ``inspect().stats()``, not trusted from the
    database) and reports the total that runs afterwards: a worker that refused its change
    or did not reply is counted at the size it had (one that did not reply and no longer answers
    ``stats()`` stopped meanwhile, and is not counted). ``mode="autoscale"`` sets each worker's
    autoscaler maximum to its share, for workers run with ``--autoscale`` (no size is
    reported: the pool moves below the maximum by itself).

    Workers that do not answer ``inspect().stats()`` within the timeout get no share and are
    not counted: a stopped worker runs nothing, and the size of one that is alive but slow
    is unknown; the detail names every worker of ``destination`` that did not answer.
    """

    def __init__(self, app=None, timeout: float = 5.0) -> None:
        self.app = app
        self.timeout = timeout

    def _app(self):
        if self.app is not None:
            return self.app
        from celery import current_app

        return current_app

    def _stats(self, destination: list[str] | None) -> dict[str, dict]:
        stats = self._app().control.inspect(destination=destination, timeout=self.timeout).stats()
        if not stats:
            raise ActuatorError(f"celery: no worker answered (destination={destination})")
        return stats

    def pool_sizes(self, destination: list[str] | None) -> dict[str, int]:
        """Each answering worker's pool processes now."""
        sizes = {}
        for worker, info in self._stats(destination).items():
            pool = info.get("pool", {})
            processes = pool.get("processes")
            sizes[worker] = (
                len(processes) if processes is not None else pool.get("max-concurrency", 0)
            )
        return sizes

    def apply(self, request: ActuationRequest) -> ActuationResult:
        cfg = require_valid_config("celery", request.config)
        destination = cfg.get("destination") or None
        if isinstance(destination, str):
            destination = [destination]
        if cfg.get("mode", "pool") == "autoscale":
            return self._autoscale(request, destination, int(cfg.get("autoscale_min", 1)))
        sizes = self.pool_sizes(destination)
        spread = spread_units(request.desired_units, sizes)
        control = self._app().control
        running, details, refused, silent = {}, [], [], []
        for worker, share in spread.shares.items():
            size = sizes[worker]
            delta = share - size
            if delta == 0:
                running[worker] = size
                details.append(f"{worker}: {size} (already at size)")
                continue
            change = control.pool_grow if delta > 0 else control.pool_shrink
            reply = change(abs(delta), destination=[worker], reply=True, timeout=self.timeout)
            problem = _reply_problem(worker, reply)
            if problem is None:
                running[worker] = share
                details.append(f"{worker}: {size}->{share}")
            else:
                # Refused ("all processes busy") or silent: the pool most likely kept its
                # size, and counting the share would report processes that do not run.
                running[worker] = size
                refused.append(f"{worker} kept {size} (asked {share}): {problem}")
                details.append(f"{worker}: {size} (asked {share}, {problem})")
                if not reply:
                    silent.append(worker)
        changes = sum(1 for w in spread.shares if spread.shares[w] != sizes[w])
        if changes and len(refused) == changes:
            raise ActuatorError("celery pool: no worker applied its change: " + "; ".join(refused))
        warnings = []
        stopped = self._stopped(silent)
        for worker in stopped:  # left since its size was read: it runs nothing
            del running[worker]
            refused = [r for r in refused if not r.startswith(f"{worker} kept")]
            warnings.append(
                f"celery pool: {worker} did not reply to its change and no longer answers "
                "inspect().stats(): stopped, not counted"
            )
        total = sum(running.values())
        warnings[:0] = [f"celery pool: {r}; counted at its old size" for r in refused]
        warnings += _spread_warnings(spread, sizes, destination)
        detail = (
            f"celery pool: {total} processes over {len(sizes)} worker(s) "
            f"(requested {request.desired_units}): " + "; ".join(details)
        )
        return ActuationResult(total, detail, tuple(warnings))

    def _stopped(self, silent: list[str]) -> list[str]:
        """Which of the workers that did not reply to their pool change are gone.

        A worker read by ``inspect().stats()`` may stop before its change reaches it (a
        deploy, a restart): counted at the size it had, it would report processes that no
        longer run, where a worker that does not answer stats in the first place gets no
        share. One more ``stats()`` to just those workers tells a stopped one from a slow one
        (which keeps being counted at its old size: its grown processes show only seconds
        later anyway).
        """
        if not silent:
            return []
        stats = self._app().control.inspect(destination=silent, timeout=self.timeout).stats()
        return [worker for worker in silent if worker not in (stats or {})]

    def _autoscale(
        self, request: ActuationRequest, destination: list[str] | None, minimum: int
    ) -> ActuationResult:
        """Each answering worker's autoscaler maximum set to its share of the total."""
        sizes = self.pool_sizes(destination)
        spread = spread_units(request.desired_units, sizes)
        control = self._app().control
        details = []
        for worker, share in spread.shares.items():
            replies = control.autoscale(
                share, min(minimum, share), destination=[worker], reply=True, timeout=self.timeout
            )
            if not replies:
                raise ActuatorError(f"celery autoscale: {worker} did not reply")
            _raise_on_error(f"celery autoscale on {worker}", replies)
            details.append(f"{worker}: max {share}")
        # The autoscalers' maxima, not a running size (each pool moves between its min and
        # max by itself): nothing to report, the requested total stands.
        warnings = _spread_warnings(spread, sizes, destination)
        return ActuationResult(None, "celery autoscale: " + "; ".join(details), tuple(warnings))


def _reply_problem(worker: str, reply: Any) -> str | None:
    """Why a worker's answer to a pool change is not a success (None when it is)."""
    if not reply:
        return "no reply"
    errors = [
        str(answer["error"])
        for item in reply
        if isinstance(item, dict)
        for name, answer in item.items()
        if name == worker and isinstance(answer, dict) and "error" in answer
    ]
    return "; ".join(errors)[:200] if errors else None


def _spread_warnings(
    spread: Spread, sizes: dict[str, int], destination: list[str] | None
) -> list[str]:
    """What an operator must know to read the reported total: a floor that raised it above
    the request, and named workers that were left out of it."""
    warnings = []
    if spread.floored:
        warnings.append(
            f"celery: {spread.requested} unit(s) requested over {len(sizes)} worker(s); each "
            f"keeps at least {MIN_PER_MEMBER} process, so {spread.total} run "
            "(set min_units to at least the number of workers)"
        )
    silent = sorted(set(destination or ()) - set(sizes))
    if silent:
        warnings.append(
            f"celery: {', '.join(silent)[:300]} did not answer inspect().stats(): given no "
            "share and not counted"
        )
    return warnings


def _raise_on_error(what: str, replies: list[dict]) -> None:
    """Remote-control replies look like ``[{worker: {"ok": ...} | {"error": ...}}]``."""
    errors = [f"{worker}: {answer['error']}" for reply in replies
              for worker, answer in reply.items()
              if isinstance(answer, dict) and "error" in answer]  # fmt: skip
    if errors:
        raise ActuatorError(f"{what}: " + "; ".join(errors))


class KubernetesActuator:
    """Patch a Deployment's scale subresource through the official client, when installed."""

    def __init__(self, apps_api=None) -> None:
        self.apps_api = apps_api

    def _api(self):
        if self.apps_api is not None:
            return self.apps_api
        try:
            from kubernetes import client, config
        except ImportError as exc:
            raise ActuatorError(
                "kubernetes actuator: the 'kubernetes' package is not installed"
            ) from exc
        try:
            config.load_incluster_config()
        except Exception:
            try:
                config.load_kube_config()
            except Exception as exc:
                raise ActuatorError(f"kubernetes actuator: no configuration ({exc})") from exc
        return client.AppsV1Api()

    def apply(self, request: ActuationRequest) -> ActuationResult:
        cfg = require_valid_config("kubernetes", request.config)
        name, namespace = cfg.get("deployment"), cfg.get("namespace", "default")
        if not name:
            raise ActuatorError("kubernetes actuator: actuator_config.deployment is not set")
        api = self._api()
        try:
            result = api.patch_namespaced_deployment_scale(
                name=name, namespace=namespace, body={"spec": {"replicas": request.desired_units}}
            )
        except Exception as exc:  # the client raises ApiException; keep the message
            raise ActuatorError(f"kubernetes {namespace}/{name}: {exc}") from exc
        # The Scale the API returns holds the replicas the Deployment was set to, which an
        # admission webhook or a policy may have changed from the request.
        replicas = getattr(getattr(result, "spec", None), "replicas", None)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            return ActuationResult(None, f"kubernetes {namespace}/{name}: scale patched")
        return ActuationResult(replicas, f"kubernetes {namespace}/{name}: replicas={replicas}")


def actuator_for(kind: str) -> Actuator:
    """The actuator of a resource's ``actuator`` field."""
    actuators: dict[str, type] = {
        "dry_run": DryRunActuator, "webhook": WebhookActuator,
        "celery": CeleryPoolActuator, "kubernetes": KubernetesActuator,
    }  # fmt: skip
    if kind not in actuators:
        raise ActuatorError(f"unknown actuator {kind!r}")
    return actuators[kind]()

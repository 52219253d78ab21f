"""Hostile input on every operation of the OpenAPI schema: a 4xx naming the field, never a 500.

The project's rule: bad input gets a clear error (400 naming the field), never a 500 and
never a half-written batch. Operations come from the schema (``openapi()["paths"]``), so a
new endpoint is walked without anyone adding a line; a new request body only asks for a
valid example in ``VALID_BODIES`` (the fuzzing changes one property of it at a time, so a
400 is about that property and not about a missing neighbour).

Deterministic: fixed hostile values, no randomness. Requests use an admin key so that no
role check hides the input handling. Each request runs in a savepoint that is rolled back,
so one request's writes never change what the next one sees; no Celery message is sent
and no connection leaves the machine.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import quote

import pytest
from celery import Celery
from celery.app.task import Task
from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.http import QueryDict
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from rest_framework.request import Request
from rest_framework.settings import api_settings

from optimization.models import Recommendation
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.schema import openapi

API_PREFIX = "/admin/api/phase3/"
METHODS = ("get", "post", "put", "patch", "delete")
WRITES = ("post", "put", "patch")
JSON = "application/json"
# The project's own apps: the six systems and the two they stand on.
PROJECT_APPS = ("phase3", "telemetry", *settings.PHASE3_SYSTEMS)


class Raw(str):
    """JSON text sent verbatim, for what Python's json cannot write (``1e309``, deep nests)."""


HUGE = Raw("1e309")  # beyond a double: Python's json makes it infinity
DEEP = Raw("[" * 5000 + "]" * 5000)  # deeper than Python's recursion limit
NEAR_DEEP = Raw("[" * 1000 + "]" * 1000)  # parses, but encoding it again may recurse too deep
NESTED = {"a": [{"b": {"c": [None, True, 1.5, "", {"d": [[], {}]}]}}], "": {"\x00": "\x00"}}

# A default window a day before the first is before year 1; a day after the last, past
# year 9999: Python's datetime raises OverflowError on either.
EXTREME_DATES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
QUERY_VALUES = [
    "",
    "abc",
    "-1",
    "0",
    "1.5",
    "1e309",
    "NaN",
    "Infinity",
    "2026-13-45",
    "2026-02-30T25:61:00Z",
    *EXTREME_DATES,
    "9" * 30,
    "x" * 5000,
    "[]",
    "{}",
    "\x00",
    "true\x00",
    "' OR 1=1 --",
    "%",
    "ü",
]
PATH_INT_VALUES = ["999999999", "abc", "-1", "0", str(2**64), "1e309", "\x00"]
PATH_STR_VALUES = ["999999999", "x" * 300, "\x00", "..", "' OR 1=1 --", "ü"]
NON_OBJECT_BODIES = [
    Raw("[]"),
    Raw("[{}]"),
    Raw('"text"'),
    Raw("null"),
    Raw("42"),
    HUGE,
    DEEP,
    NEAR_DEEP,
    Raw('{"a": NaN}'),
    Raw("{"),
]
WRONG_VALUES: dict[str | None, list] = {
    "string": [123, 1.5, True, {"a": "b"}, ["x"], "\x00", "x" * 5000, HUGE, NESTED],
    "integer": ["abc", "", "1.5", 1.5, True, {"a": 1}, [1], 2**64, -(2**64), HUGE, "NaN"],
    "number": [
        "abc",
        "",
        "NaN",
        "Infinity",
        "-Infinity",
        {"a": 1},
        [1],
        HUGE,
        Raw("-1e309"),
        Raw("1" + "0" * 400),
    ],
    "boolean": ["maybe", 2, {"a": 1}, [True], HUGE],
    "array": [{"a": 1}, "abc", 123, [[[[]]]], [None], [HUGE], [NESTED], DEEP, NEAR_DEEP],
    "object": ["abc", 123, [1, 2], NESTED, {"a": HUGE}, {"a": "\x00"}, DEEP, {"a": NEAR_DEEP}],
    None: [
        "abc",
        123,
        [1, 2],
        NESTED,
        {"a": HUGE},
        {"a": "\x00"},
        {"\x00": 1},
        [HUGE],
        DEEP,
        {"a": NEAR_DEEP},
    ],
}

_names = itertools.count(1)


def _unique(stem: str) -> str:
    """Names and keys are unique per table: every valid body gets fresh ones."""
    return f"fuzz-{stem}-{next(_names)}"


def _now() -> str:
    return timezone.now().isoformat()


def _ship_body(w: World) -> dict:
    """Ship needs a started experiment (a draft is a 400 naming ``status``): the world's
    experiment is created as a draft through the API, so start it here."""
    from personalization.models import Experiment

    Experiment.objects.filter(pk=w.pk("personalization/experiments/")).update(
        status=Experiment.Status.RUNNING, starts_at=timezone.now()
    )
    return {"variant": "b"}


# A valid body per request component: the base that one property at a time is spoiled in.
# Values may need other rows (a rule's resource): they get them from the `World`.
VALID_BODIES: dict[str, Callable[[World], dict]] = {
    "ApiKey": lambda w: {"name": _unique("key"), "role": "viewer", "expires_in_days": 30},
    "RunNow": lambda w: {"schedule": w.schedule()},
    "OperatorNote": lambda w: {"note": "checked"},
    "ResponsePlaybook": lambda w: {
        "name": _unique("playbook"),
        "action": "celery_task",
        "target": "scaling.evaluate",
        "labels": {"env": "prod"},
        "arguments": {},
        "min_severity": "warning",
        "max_attempts": 3,
        "series_name": "svc.latency",
        "enabled": True,
        "inhibit_effects": True,
        "update_interval_seconds": 300,
        "effect_grace_seconds": 1800,
        "active_weekdays": ["monday", "friday"],
        "active_start": "09:00",
        "active_end": "18:00",
        "active_time_zone": "Europe/Paris",
    },
    "DetectionTuning": lambda w: {
        "name": _unique("tuning"),
        "series_name": "svc.latency",
        "labels": {"env": "prod"},
        "sensitivity": "low",
        "direction": "above",
        "comment": "latency falling is good news",
        "enabled": True,
    },
    "DetectionRule": lambda w: {
        "name": _unique("rule"),
        "series_name": "svc.latency",
        "labels": {"env": "prod"},
        "above": 100.0,
        "below": 1.0,
        "min_duration_seconds": 60,
        "enabled": True,
    },
    "InhibitionRule": lambda w: {
        "name": _unique("inhibition"),
        "enabled": True,
        "source_series": "db.*",
        "source_labels": {"env": "prod"},
        "target_series": "http.*",
        "target_labels": {"tier": "web"},
        "equal": ["region"],
        "comment": "every endpoint waits on the database",
    },
    "ChangeEvent": lambda w: {
        "at": (timezone.now() - timedelta(minutes=5)).isoformat(),
        "kind": "deploy",
        "title": "checkout 1.4.2",
        "labels": {"service": "checkout"},
        "url": "https://ci.example/runs/812",
        "source": "github-actions",
    },
    "SignalLayerRule": lambda w: {
        "name": _unique("layer"),
        "series_name": "orders.*",
        "labels": {"env": "prod"},
        "layer": "demand",
        "comment": "orders arriving are load",
        "enabled": True,
    },
    "BulkAction": lambda w: {
        "action": "acknowledge",
        "ids": [int(w.pk("anomaly/anomalies/"))],
        "note": "one incident",
    },
    "InhibitionRulePreview": lambda w: {
        "source_series": "db.*",
        "source_labels": {"env": "prod"},
        "target_series": "http.*",
        "target_labels": {"tier": "web"},
        "equal": ["region"],
    },
    "SilenceSeries": lambda w: {"minutes": 60, "comment": "fixing it"},
    "SilencePreview": lambda w: {"series_pattern": "svc.*", "labels": {"env": "prod"}},
    "Silence": lambda w: {
        "series_pattern": "svc.*",
        "labels": {"env": "prod"},
        "starts_at": timezone.now().isoformat(),
        "ends_at": (timezone.now() + timedelta(hours=2)).isoformat(),
        "comment": "deploy",
    },
    "ForecastRecompute": lambda w: {"type": "user_growth", "horizons": [7]},
    "ForecastTarget": lambda w: {
        "name": _unique("target"),
        "prediction_type": "user_growth",
        "source": "events",
        "series": None,
        "event_metric": "active_users",
        "threshold": 1000.0,
        "threshold_direction": "above",
        "enabled": True,
    },
    "Applied": lambda w: {"applied_at": (timezone.now() - timedelta(hours=1)).isoformat()},
    "Reason": lambda w: {"reason": "not now"},
    "Experiment": lambda w: {
        "key": _unique("exp"),
        "name": "fuzz experiment",
        "description": "",
        "variants": [{"name": "control", "weight": 1}, {"name": "b", "weight": 1}],
        "coverage": 1.0,
        "targeting": {},
        "primary_metric": {"kind": "conversion", "event": "purchase"},
        "guardrail_metrics": [],
        "alpha": 0.05,
        "planned_users": 1000,
        "starts_at": None,
        "ends_at": None,
    },
    "Recompute": lambda w: {"days": 1},
    "Ship": _ship_body,
    "Rule": lambda w: {
        "key": _unique("rule"),
        "name": "fuzz rule",
        "description": "",
        "conditions": {"persona": ["optimizer"]},
        "action": {"theme": "dark"},
        "priority": 1,
        "enabled": True,
        "starts_at": None,
        "ends_at": None,
    },
    "Evaluate": lambda w: {"resource": w.pk("scaling/resources/")},
    "ScalableResource": lambda w: {
        "name": _unique("resource"),
        "kind": "web_workers",
        "current_units": 2,
        "min_units": 1,
        "max_units": 4,
        "unit_capacity": 10.0,
        "cost_per_unit_hour": 0.1,
        "target_utilization": 0.6,
        "outcome_tolerance": 0.2,
        "load_series_name": "http.requests.rate",
        "load_series_labels": {},
        "startup_seconds": 60,
        "settle_seconds": 60,
        "stabilization_window_seconds": 60,
        "predictive_enabled": False,
        "actuator": "dry_run",
        "actuator_config": {},
        "enabled": True,
    },
    "ScalingRule": lambda w: {
        "name": _unique("scaling-rule"),
        "metric": "system.cpu.utilization",
        "metric_labels": {},
        "queue": "",
        "kind": "target_tracking",
        "target": 0.6,
        "tolerance": 0.1,
        "critical": 0.95,
        "cooldown_up_seconds": 60,
        "cooldown_down_seconds": 300,
        "priority": 1,
        "enabled": True,
        "resource": w.pk("scaling/resources/"),
        "steps": [{"lower": 0.0, "upper": 1.0, "change": 1}],
    },
    "EventBatch": lambda w: {
        "events": [
            {
                "user_id": "fuzz-user",
                "name": "page_view",
                "ts": _now(),
                "session_id": "s1",
                "properties": {"feature": "search"},
                "client_id": _unique("event"),
            }
        ]
    },
    "SampleBatch": lambda w: {
        "samples": [
            {
                "series": "fuzz.load",
                "labels": {"env": "prod"},
                "ts": _now(),
                "value": 1.0,
                "unit": "req/min",
            }
        ]
    },
}


def _recommendation() -> int:
    """Claimed and applied: the state every action with a body (applied, dismiss, rollback)
    accepts, so their bodies are what decides the answer."""
    return Recommendation.objects.create(
        dedup_key="fuzz",
        state=Recommendation.State.CLAIMED,
        applied_at=timezone.now() - timedelta(hours=2),
        category=Recommendation.Category.values[0],
        title="fuzz",
        confidence=0.5,
        confidence_explanation="",
        predicted_ms_saved_per_day=1.0,
        predicted_db_ms_saved_per_day=1.0,
        complexity=Recommendation.Level.values[0],
        risk=Recommendation.Level.values[0],
        rollback_plan="revert",
    ).pk


# Rows of collections the API cannot create (or need not: a read-only series).
ORM_SEEDS: dict[str, Callable[[], object]] = {
    "anomaly/anomalies/": lambda: AnomalyFactory().pk,
    "optimization/recommendations/": _recommendation,
    "telemetry/series/": lambda: series_ensure(name="fuzz.load").pk,
    # Any user id is served a configuration (no row needed): the query is what is fuzzed.
    "personalization/users/": lambda: "fuzz-user",
}


# --- The schema ----------------------------------------------------------------------------


def _component(ref: str) -> dict:
    return openapi()["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def _resolved(node: dict) -> dict:
    """A property's schema with ``$ref`` followed and a nullable ``oneOf`` reduced."""
    while "$ref" in node:
        node = _component(node["$ref"])
    for key in ("allOf", "oneOf", "anyOf"):
        if key in node:
            branches = [_resolved(b) for b in node[key]]
            return next((b for b in branches if b.get("type") or b.get("properties")), branches[0])
    return node


def _type(node: dict) -> str | None:
    node = _resolved(node)
    if "type" in node:
        return node["type"]
    if "enum" in node:
        return "string"
    return "object" if "properties" in node else None


def _operations() -> list[tuple[str, str, dict]]:
    found = []
    for path, item in openapi()["paths"].items():
        for method in METHODS:
            if method in item:
                found.append((path, method, item[method]))
    return sorted(found, key=lambda f: (f[0], f[1]))


def _params(operation: dict, where: str) -> list[dict]:
    return [p for p in operation.get("parameters", []) if p["in"] == where]


def _body_component(operation: dict) -> str | None:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return schema["$ref"].rsplit("/", 1)[-1] if schema and "$ref" in schema else None


def _writable(component: str) -> dict[str, dict]:
    properties = openapi()["components"]["schemas"][component].get("properties", {})
    return {name: node for name, node in properties.items() if not node.get("readOnly")}


def _id(op: tuple[str, str, dict]) -> str:
    return f"{op[1].upper()} {op[0].removeprefix(API_PREFIX)}"


OPERATIONS = _operations()
WITH_QUERY = [op for op in OPERATIONS if op[1] == "get" and _params(op[2], "query")]
WITH_PATH = [op for op in OPERATIONS if _params(op[2], "path")]
WITH_BODY = [op for op in OPERATIONS if op[1] in WRITES and _body_component(op[2])]


def _collection(path: str, param: str) -> str:
    """``anomaly/playbooks/`` for ``/admin/api/phase3/anomaly/playbooks/{id}/acknowledge/``."""
    return path[: path.index("{" + param + "}")].removeprefix(API_PREFIX)


# --- Requests --------------------------------------------------------------------------------


def _dumps(value) -> str:
    """JSON text of `value`, with every `Raw` inside written verbatim."""
    raws: list[Raw] = []

    def swap(v):
        if isinstance(v, Raw):
            raws.append(v)
            return f"\ue000{len(raws) - 1}\ue000"
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    if isinstance(value, Raw):
        return value
    text = json.dumps(swap(value))
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\ue000{i}\ue000"), raw)
    return text


def _shown(value) -> str:
    text = _dumps(value) if not isinstance(value, str) or isinstance(value, Raw) else repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} chars)"


_COUNT_SQL: str | None = None


def _row_counts() -> tuple[int, ...]:
    """Rows in every table of the project: a 4xx write must leave them as they were."""
    global _COUNT_SQL
    if _COUNT_SQL is None:
        tables = sorted(
            {
                m._meta.db_table
                for m in apps.get_models()
                if m._meta.app_label in PROJECT_APPS and m._meta.managed
            }
        )
        quoted = (connection.ops.quote_name(t) for t in tables)
        _COUNT_SQL = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t})" for t in quoted)
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_SQL)
        return tuple(cursor.fetchone())


def _write_attempts() -> tuple | None:
    """What this transaction has inserted, updated or deleted so far, by table, on PostgreSQL.

    A cheap first look before `_row_counts`: counting every table after each of hundreds of
    requests cost 10 s per test inside the whole suite (the counts scan the dead rows that
    earlier tests' rolled-back bulk inserts leave behind). Unchanged counters mean no row
    was written; changed ones send the check to the real counts. None elsewhere.
    """
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relid, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables "
            "WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relid"
        )
        return tuple(cursor.fetchall())


@contextmanager
def _rolled_back() -> Iterator[None]:
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def _with_nul(value):
    """`value` with a NUL appended to every string in it, keys included.

    PostgreSQL stores no NUL in text or jsonb: a valid document with one must be refused
    by validation, not by the database.
    """
    if isinstance(value, str):
        return value + "\x00"
    if isinstance(value, dict):
        return {_with_nul(k): _with_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_nul(v) for v in value]
    return value


def _has_raw(value) -> bool:
    if isinstance(value, Raw):
        return True
    if isinstance(value, dict):
        return any(_has_raw(v) for v in value.values())
    return isinstance(value, list) and any(_has_raw(v) for v in value)


def _is_parse_error(response) -> bool:
    """A body refused by the JSON parser has no fields yet: the answer names line and column."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("detail", "")).startswith("JSON parse error")


def _error_keys(body) -> set[str]:
    """Every key of a DRF error body, however deep (``{"samples": {"0": {"ts": [...]}}}``)."""
    keys: set[str] = set()
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            keys.update(map(str, node))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return keys


class World:
    """The admin client and, on demand, one row per collection a path parameter names."""

    def __init__(self, client) -> None:
        self.client = client
        self._ids: dict[str, str] = {}
        self._schedule: str | None = None

    def schedule(self) -> str:
        if self._schedule is None:
            every, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
            task = PeriodicTask.objects.create(
                name="fuzz: a schedule", task="insights.generate", interval=every
            )
            self._schedule = task.name
        return self._schedule

    def pk(self, collection: str) -> str:
        if collection not in self._ids:
            self._ids[collection] = str(self._create(collection))
        return self._ids[collection]

    def can_make(self, collection: str) -> bool:
        return collection in ORM_SEEDS or self._create_component(collection) in VALID_BODIES

    @staticmethod
    def _create_component(collection: str) -> str | None:
        create = next(
            (op for op in OPERATIONS if op[0] == API_PREFIX + collection and op[1] == "post"), None
        )
        return create and _body_component(create[2])

    def _create(self, collection: str):
        if collection in ORM_SEEDS:
            return ORM_SEEDS[collection]()
        component = self._create_component(collection)
        assert component in VALID_BODIES, f"no way to make a row of {collection}: add a seed"
        body = _dumps(VALID_BODIES[component](self))
        response = self.client.post(API_PREFIX + collection, body, content_type=JSON)
        assert response.status_code == 201, (collection, response.status_code, response.content)
        return response.json()["id"]

    def url(self, path: str, operation: dict, **given: str) -> str:
        for param in _params(operation, "path"):
            name = param["name"]
            value = given[name] if name in given else self.pk(_collection(path, name))
            path = path.replace("{" + name + "}", quote(value, safe=""))
        return path

    def send(self, method: str, url: str, body=None, query: dict | None = None):
        call = getattr(self.client, method)
        if method in WRITES:
            return call(url, _dumps(body if body is not None else {}), content_type=JSON)
        return call(url, query or {})


@pytest.fixture(autouse=True)
def _nothing_leaves_the_machine(monkeypatch, settings):
    """No e-mail, no Celery message, no connection but to the local database and Redis."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.OPTIMIZATION_FLUSH_IN_THREAD = False
    sent: list = []
    monkeypatch.setattr(Celery, "send_task", lambda self, *a, **kw: sent.append((a, kw)))
    monkeypatch.setattr(Task, "apply_async", lambda self, *a, **kw: sent.append((a, kw)))
    connect = socket.socket.connect

    def local_only(sock, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a network call to {address} while fuzzing the API")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


@pytest.fixture
def world(client_with_role) -> World:
    client = client_with_role("admin")
    client.raise_request_exception = False  # a 500 is a finding to list, not a crash
    return World(client)


class Findings:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def check(
        self,
        what: str,
        response,
        *,
        name: str | None,
        allowed: tuple[int, ...] = (),
        unparsable: bool = False,
    ) -> None:
        """A 500 is a bug; a 400 must name `name` (when given); `allowed` narrows the answer.

        `unparsable`: the body holds text a JSON parser may refuse as a whole (a number
        beyond a double, nesting deeper than the parser's limit), which then names no field.
        """
        status = response.status_code
        if status >= 500:
            exc = getattr(response, "exc_info", None)
            why = f"{exc[0].__name__}: {str(exc[1])[:200]}" if exc else "no exception"
            self.problems.append(f"{what} -> {status} ({why})")
            return
        if allowed and status not in allowed:
            self.problems.append(f"{what} -> {status}, expected one of {allowed}")
            return
        if status == 400 and unparsable and _is_parse_error(response):
            return
        if status == 400 and name is not None:
            try:
                body = response.json()
            except ValueError:
                self.problems.append(f"{what} -> 400 without a JSON body")
                return
            if name not in _error_keys(body):
                self.problems.append(f"{what} -> 400 not naming {name!r}: {str(body)[:200]}")

    def assert_none(self) -> None:
        assert not self.problems, "\n".join(self.problems)


# --- The tests -------------------------------------------------------------------------------


def test_the_schema_walk_finds_every_kind_of_input():
    assert len(OPERATIONS) >= 100 and WITH_QUERY and WITH_PATH and WITH_BODY


@pytest.mark.django_db
@pytest.mark.parametrize("op", WITH_QUERY, ids=[_id(op) for op in WITH_QUERY])
def test_query_parameters_refuse_hostile_values_naming_them(op, world):
    path, method, operation = op
    url = world.url(path, operation)
    findings = Findings()
    # `label.<key>` is a family of parameters: one member stands for it.
    names = [p["name"].replace("<key>", "env") for p in _params(operation, "query")]
    for name in names:
        for value in QUERY_VALUES:
            with _rolled_back():
                response = world.send(method, url, query={name: value})
            findings.check(f"?{name}={_shown(value)}", response, name=name)
    findings.assert_none()


EVERY_NAME = "*"  # a view walked the query itself (``label.<key>``): it reads any name


class _ReadsRecorded(QueryDict):
    """A request's query that notes every name a view looks up in it."""

    reads: set[str]

    def _read(self, name: str) -> None:
        self.reads.add(name)

    def __getitem__(self, key):
        self._read(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self._read(key)
        return super().__contains__(key)

    def get(self, key, default=None):
        self._read(key)
        return super().get(key, default)

    def getlist(self, key, default=None):
        self._read(key)
        return super().getlist(key, default)

    def __iter__(self):
        self._read(EVERY_NAME)
        return super().__iter__()

    def keys(self):
        self._read(EVERY_NAME)
        return super().keys()

    def items(self):
        self._read(EVERY_NAME)
        return super().items()

    def lists(self):
        self._read(EVERY_NAME)
        return super().lists()

    def values(self):
        self._read(EVERY_NAME)
        return super().values()

    def dict(self):
        self._read(EVERY_NAME)
        return super().dict()


@pytest.fixture
def query_reads(monkeypatch) -> set[str]:
    """The query names read through ``request.query_params`` by the requests sent."""
    reads: set[str] = set()

    def recorded(request: Request) -> QueryDict:
        query = request._request.GET
        if not isinstance(query, _ReadsRecorded):
            copy = _ReadsRecorded(mutable=True)
            copy.reads = reads
            for key, values in QueryDict.lists(query):
                copy.setlist(key, values)
            copy._mutable = False
            request._request.GET = query = copy
        return query

    monkeypatch.setattr(Request, "query_params", property(recorded))
    return reads


# Read by DRF itself on every request (content negotiation), not by a view.
FRAMEWORK_QUERY = {api_settings.URL_FORMAT_OVERRIDE}


@pytest.mark.django_db
@pytest.mark.parametrize("op", OPERATIONS, ids=[_id(op) for op in OPERATIONS])
def test_every_query_parameter_a_view_reads_is_in_the_schema(op, world, query_reads):
    """What the fuzzing above walks is the schema: a filter it does not declare goes unfuzzed.

    A plain request per operation (a valid body where it takes one; a row's id where the
    test can make one, else an unknown id, a 404 that still runs ``get_queryset``) records
    each name the view looks up in ``request.query_params``; each must be a query parameter
    of that operation in the schema (``label.<key>`` stands for every ``label.`` name).
    """
    path, method, operation = op
    unknown = {
        p["name"]: "999999999"
        for p in _params(operation, "path")
        if not world.can_make(_collection(path, p["name"]))
    }
    url = world.url(path, operation, **unknown)
    component = _body_component(operation)
    base_component = component and component.removeprefix("Patched")
    body = VALID_BODIES[base_component](world) if base_component in VALID_BODIES else None
    query_reads.clear()  # the rows `world` made on the way are not this operation's reads
    with _rolled_back():
        response = world.send(method, url, body=body)
    assert response.status_code < 500, (response.status_code, response.content[:500])
    declared = [p["name"] for p in _params(operation, "query")]
    families = [name.split("<", 1)[0] for name in declared if "<" in name]
    undeclared = {
        name
        for name in query_reads - FRAMEWORK_QUERY
        if name not in declared
        and not (families and (name == EVERY_NAME or name.startswith(tuple(families))))
    }
    assert not undeclared, (
        f"reads query parameters the schema does not declare: {sorted(undeclared)}"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("op", WITH_PATH, ids=[_id(op) for op in WITH_PATH])
def test_unknown_and_malformed_ids_are_404_or_400(op, world):
    path, method, operation = op
    findings = Findings()
    component = _body_component(operation)
    for param in _params(operation, "path"):
        numeric = _type(param["schema"]) == "integer"
        for value in PATH_INT_VALUES if numeric else PATH_STR_VALUES:
            url = world.url(path, operation, **{param["name"]: value})
            body = VALID_BODIES[component](world) if component in VALID_BODIES else {}
            with _rolled_back():
                response = world.send(method, url, body=body)
            allowed = (400, 404) if numeric else ()
            findings.check(
                f"{param['name']}={_shown(value)}", response, name=param["name"], allowed=allowed
            )
    findings.assert_none()


@pytest.mark.django_db
@pytest.mark.parametrize("op", WITH_BODY, ids=[_id(op) for op in WITH_BODY])
def test_bodies_of_the_wrong_shape_are_400_naming_the_field(op, world):
    path, method, operation = op
    component = _body_component(operation)
    base_component = component.removeprefix("Patched")
    assert base_component in VALID_BODIES, f"add a valid example body for {base_component}"
    url = world.url(path, operation)
    findings = Findings()

    # Every attempt runs in a transaction rolled back after it, so each starts from these.
    counts_before: list[tuple[int, ...]] = []

    def attempt(what: str, body, *, name: str | None, allowed: tuple[int, ...] = ()) -> None:
        with _rolled_back():
            if not counts_before:
                counts_before.append(_row_counts())
            writes_before = _write_attempts()
            response = world.send(method, url, body=body)
            if (
                400 <= response.status_code < 500
                and (writes_before is None or _write_attempts() != writes_before)
                and _row_counts() != counts_before[0]
            ):
                findings.problems.append(f"{what} -> {response.status_code} but rows were written")
        findings.check(what, response, name=name, allowed=allowed, unparsable=_has_raw(body))

    # The base is valid, so each 400 below is the spoiled property's doing.
    base = {} if method == "patch" else VALID_BODIES[base_component](world)
    with _rolled_back():
        response = world.send(method, url, body=base)
    assert response.status_code < 400, (base, response.status_code, response.content)

    for body in NON_OBJECT_BODIES:
        attempt(f"body {_shown(body)}", body, name=None, allowed=(400, 413, 415))

    example = VALID_BODIES[base_component](world)
    for name, node in _writable(component).items():
        with_nul = _with_nul(example.get(name))
        extra = [with_nul] if with_nul != example.get(name) else []
        if node.get("format") == "date-time":
            extra += EXTREME_DATES  # arithmetic on them must not overflow into a 500
        for value in [*WRONG_VALUES[_type(node)], *extra]:
            attempt(f"{name}={_shown(value)}", {**base, name: value}, name=name)
        items = _resolved(node.get("items", {})) if _type(node) == "array" else {}
        template = (base.get(name) or [{}])[0] if isinstance(base.get(name), list) else {}
        for inner, inner_node in items.get("properties", {}).items():
            if inner_node.get("readOnly") or not isinstance(template, dict):
                continue
            for value in WRONG_VALUES[_type(inner_node)]:
                row = {**template, inner: value}
                attempt(f"{name}[0].{inner}={_shown(value)}", {**base, name: [row]}, name=inner)
    findings.assert_none()

"""Fixtures shared by every app's tests.

Services: with DATABASE_URL / REDIS_URL set the suite runs on PostgreSQL and Redis.
``REQUIRE_SERVICES=1`` (CI) turns "service not reachable → skip" into a failure, so a
green CI run has really exercised them.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def pytest_configure(config) -> None:
    """`PHASE3_TEST_CLOCK` (epoch seconds, or an ISO time, UTC if naive) runs the session
    as if it had started then, the clock ticking on from there.

    The shared demo world ends when the session starts, so what a test sees in it depends
    on the hour: two tests failed in CI at hours they had never run at here. `make
    test-clock-sweep` runs the demo-world tests at several times of the week; a failing
    time is reproduced by setting the variable to it.
    """
    at = os.environ.get("PHASE3_TEST_CLOCK")
    if not at:
        return
    from datetime import UTC, datetime

    import time_machine

    try:
        moment = datetime.fromtimestamp(float(at), UTC)
    except ValueError:
        moment = datetime.fromisoformat(at)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    time_machine.travel(moment, tick=True).start()


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def need_service(what: str, reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but {reason}")
    pytest.skip(f"{what} not available: {reason}")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        need_service("Redis", "REDIS_URL is not set")
    if not _reachable(url, 6379):
        need_service("Redis", f"{url} is not reachable")
    return url


@pytest.fixture
def postgres(settings) -> None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        need_service("PostgreSQL", "DATABASE_URL does not point at PostgreSQL")


def _redis_database_of_this_worker(url: str, worker: str) -> str:
    """The Redis URL moved to a database of its own for a pytest-xdist worker ("gw0", ...)."""
    parsed = urlparse(url)
    base = int(parsed.path.lstrip("/") or 0)
    return parsed._replace(path=f"/{base + 1 + int(worker[2:])}").geturl()


@pytest.fixture(autouse=True)
def _isolated_cache(settings, tmp_path):
    """Each test gets its own cache: throttles and cached configs must not leak between tests.

    On Redis, `cache.clear()` is a FLUSHDB, so under pytest-xdist each worker caches in a
    database of its own (as Sentry's test plugin does); with one shared database a worker
    wiped another's throttle counters in the middle of a test. The file cache of the
    embedded default moves to the test's own directory for the same reason.
    """
    from django.core.cache import cache

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    default = settings.CACHES["default"]
    if worker.startswith("gw") and default["BACKEND"].endswith("RedisCache"):
        location = _redis_database_of_this_worker(default["LOCATION"], worker)
        settings.CACHES = {**settings.CACHES, "default": {**default, "LOCATION": location}}
    if worker.startswith("gw") and settings.REDIS_URL:
        # The job locks too (phase3.locks): each worker's database numbers its rows from 1,
        # so both workers' eager `execute_response(1)` took one lock, and one was skipped
        # as "already running" (a page never sent, a test failing one run in two).
        settings.REDIS_URL = _redis_database_of_this_worker(settings.REDIS_URL, worker)
    elif default["BACKEND"].endswith("FileBasedCache"):
        # The embedded default's file cache lives under var/, shared by both xdist workers
        # (and a running `make run`): one worker's config version and cached experiment
        # specs were read by the other, whose database holds different experiments.
        settings.CACHES = {
            **settings.CACHES,
            "default": {**default, "LOCATION": str(tmp_path / "cache")},
        }
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def api_key_factory(db):
    from phase3.keys import api_key_create

    def make(role: str = "viewer", **kwargs):
        issued = api_key_create(name=kwargs.pop("name", f"test-{role}"), role=role, **kwargs)
        return issued.api_key, issued.raw

    return make


@pytest.fixture
def client_with_role(api_key_factory):
    from rest_framework.test import APIClient

    def make(role: str = "viewer") -> APIClient:
        _, raw = api_key_factory(role)
        client = APIClient()
        client.credentials(HTTP_X_ADMIN_KEY=raw)
        return client

    return make


@pytest.fixture(scope="session")
def _demo_seeded(django_db_setup, django_db_blocker):
    from telemetry.demo import demo_ensure

    with django_db_blocker.unblock():
        demo_ensure(days=7, users=200, seed=1)


@pytest.fixture
def demo_world(_demo_seeded):
    """A small seeded demo world (7 days, 200 users), built once per test session.

    Tests that use it must not modify demo rows; they may add their own. A transactional
    test flushes the database, so the world is rebuilt when it is found missing.
    """
    from telemetry.demo import demo_ensure

    return demo_ensure(days=7, users=200, seed=1)


@pytest.fixture(scope="session", autouse=True)
def _no_profile_flush_after_the_test_database_is_gone():
    """The request profiler flushes at process exit; under pytest the test database is gone by then."""
    yield
    import atexit

    from optimization import middleware

    atexit.unregister(middleware._flush_at_exit)


def set_aside_telemetry() -> None:
    """Empty the telemetry tables inside the current test's transaction (rolled back after).

    For tests that build their own small world and count what they find: the shared demo
    world (seeded once per session) would otherwise be counted too.
    """
    from django.db import connection

    from telemetry.models import DemoIncident, DemoUser, Event, Series

    if connection.vendor == "postgresql":
        tables = [m._meta.db_table for m in (Series, Event, DemoUser)]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        return
    DemoIncident.objects.all().delete()
    for model in (Series, Event, DemoUser):
        model.objects.all().delete()


@pytest.fixture
def empty_telemetry(db) -> None:
    set_aside_telemetry()

"""Fixtures of the forecasting tests."""

from __future__ import annotations

import pytest
from celery import current_app


@pytest.fixture(autouse=True)
def _no_prophet(settings):
    """Prophet is covered by the engine tests; here it would only add seconds per fit."""
    settings.FORECASTING_USE_PROPHET = False


@pytest.fixture
def celery_eager():
    """Run ``.delay()`` in-process, as a worker would, and restore the setting afterwards."""
    previous = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _own_world(request):
    """Database tests here build their own series; the shared demo world is set aside."""
    uses_db = request.node.get_closest_marker("django_db") or "db" in request.fixturenames
    if uses_db and "demo_world" not in request.fixturenames:
        request.getfixturevalue("empty_telemetry")

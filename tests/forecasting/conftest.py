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

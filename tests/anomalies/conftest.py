"""Fixtures shared by the anomaly response tests."""

from __future__ import annotations

import pytest

from anomalies.models import Anomaly
from anomalies.services.playbooks import queue_responses


@pytest.fixture
def eager(monkeypatch, settings, django_capture_on_commit_callbacks):
    """Queue responses at `now` and run what they queue, in-process."""
    from celery import current_app

    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    def run(anomalies: list[Anomaly], now) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            queue_responses({a.pk for a in anomalies}, now=now)

    return run

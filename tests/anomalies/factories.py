"""Factories for anomaly rows, for API and response tests that do not need the detector."""

from __future__ import annotations

import factory
from django.utils import timezone

from anomalies.models import Anomaly
from telemetry.services import series_ensure


class AnomalyFactory(factory.django.DjangoModelFactory):
    """An open, well-evidenced anomaly that started now on a series named `svc.latency`."""

    class Meta:
        model = Anomaly

    series = factory.LazyFunction(lambda: series_ensure(name="svc.latency"))
    started_at = factory.LazyFunction(timezone.now)
    detected_at = factory.SelfAttribute("started_at")
    last_seen_at = factory.SelfAttribute("started_at")
    peak_score = 0.9
    peak_surprisal = 12.0
    peak_z = 8.0
    direction = 1
    observed = 10.0
    expected = 1.0
    methods = factory.LazyFunction(lambda: ["statistical", "pattern"])
    severity = "warning"

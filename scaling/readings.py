"""Current readings of rules and resources (reads only: telemetry and the broker)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from telemetry import selectors as telemetry

from .broker import broker_backlog
from .models import ScalableResource, ScalingRule

logger = logging.getLogger(__name__)

# A reading older than this says nothing about now: the rule abstains rather than act on it.
STALE_READING_SECONDS = 3600


@dataclass
class Reading:
    rule_id: int
    metric: str
    value: float | None
    at: float | None
    source: str


def rule_reading(rule: ScalingRule, *, now: float) -> Reading:
    """The rule's current metric value: the broker for queue backlogs on Redis, else telemetry."""
    if rule.kind == ScalingRule.Kind.QUEUE_BACKLOG and rule.queue:
        try:
            backlog = broker_backlog(settings.CELERY_BROKER_URL, rule.queue)
        except Exception as exc:
            logger.warning("broker backlog of %s unreadable: %s", rule.queue, exc)
            backlog = None
        if backlog is not None:
            return Reading(rule.pk, rule.metric, float(backlog), now, "broker")
    labels = rule.metric_labels or ({"queue": rule.queue} if rule.queue else {})
    series = telemetry.series_get(rule.metric, labels)
    latest = telemetry.series_latest(series.pk) if series else None
    if latest is None:
        return Reading(rule.pk, rule.metric, None, None, "missing")
    at, value = latest
    if now - at > STALE_READING_SECONDS:
        return Reading(rule.pk, rule.metric, None, at, "stale")
    return Reading(rule.pk, rule.metric, float(value), at, "telemetry")


def load_series(resource: ScalableResource):
    if not resource.load_series_name:
        return None
    return telemetry.series_get(resource.load_series_name, resource.load_series_labels or {})


def resource_utilization(resource: ScalableResource, *, now: float | None = None) -> float | None:
    """Current utilisation: demand / capacity, or the first target-tracking rule's metric."""
    now = timezone.now().timestamp() if now is None else now
    series = load_series(resource)
    latest = telemetry.series_latest(series.pk) if series else None
    if latest is not None and now - latest[0] <= STALE_READING_SECONDS and resource.capacity > 0:
        ratio = latest[1] / resource.capacity
        # A load of 1e308 over a capacity below 1 is infinity: no utilisation to report
        # (and none that a JSON answer could carry).
        return ratio if math.isfinite(ratio) else None
    rule = resource.rules.filter(enabled=True, kind=ScalingRule.Kind.TARGET_TRACKING).first()
    if rule is None:
        return None
    reading = rule_reading(rule, now=now)
    return reading.value

"""Builders for scaling tests: resources, rules and telemetry samples near now."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from scaling.models import ScalableResource, ScalingRule
from telemetry.services import samples_ingest


def resource(**kw) -> ScalableResource:
    fields = dict(name="test-web", kind="web_workers", current_units=4, min_units=1,
                  max_units=40, unit_capacity=100.0, cost_per_unit_hour=0.5,
                  target_utilization=0.6, outcome_tolerance=0.25, startup_seconds=60,
                  settle_seconds=300, stabilization_window_seconds=300,
                  predictive_enabled=False)  # fmt: skip
    fields.update(kw)
    return ScalableResource.objects.create(**fields)


def cpu_rule(res: ScalableResource, **kw) -> ScalingRule:
    fields = dict(name="cpu", metric="test.cpu", kind="target_tracking", target=0.6,
                  tolerance=0.1, critical=0.95, cooldown_up_seconds=120,
                  cooldown_down_seconds=300, priority=10)  # fmt: skip
    fields.update(kw)
    return ScalingRule.objects.create(resource=res, **fields)


def samples(
    name: str,
    values: list[float],
    *,
    end: datetime | None = None,
    step: int = 60,
    labels: dict | None = None,
) -> None:
    """``values`` ending at ``end`` (default now), one every ``step`` seconds."""
    end = end or timezone.now()
    n = len(values)
    samples_ingest(rows=[
        {"series": name, "labels": labels or {}, "ts": end - timedelta(seconds=step * (n - 1 - i)),
         "value": v}
        for i, v in enumerate(values)
    ])  # fmt: skip

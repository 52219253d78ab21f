"""Admin charts of a resource: utilisation against its target band, capacity and decisions."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from telemetry.charts import timeseries_chart

from .models import ScalableResource, ScalingDecision


def resource_charts(resource: ScalableResource, *, days: int = 7) -> list[str]:
    """Two charts from the stored evaluations of the last ``days`` (empty list without data)."""
    rows = list(
        resource.decisions.filter(at__gte=timezone.now() - timedelta(days=days))
        .order_by("at")
        .values_list(
            "at",
            "utilization_before",
            "current_units",
            "desired_units",
            "status",
            "action",
            "emergency",
            "applied_units",
        )
    )
    if not rows:
        return []
    at = [r[0] for r in rows]
    util = [r[1] for r in rows]
    low = resource.target_utilization * (1 - resource.outcome_tolerance)
    high = min(1.0, resource.target_utilization * (1 + resource.outcome_tolerance))
    # An executed change serves the size its actuator reported (r[7]) when it reported one.
    served = [
        (r[3] if r[7] is None else r[7]) if r[4] == ScalingDecision.Status.EXECUTED else r[2]
        for r in rows
    ]
    changes = [r for r in rows if r[5] != ScalingDecision.Action.NONE]
    utilization = timeseries_chart(
        f"{resource.name}: utilisation",
        lines=[{"name": "utilisation", "x": at, "y": util}],
        bands=[
            {"name": "target band", "x": at, "lower": [low] * len(at), "upper": [high] * len(at)}
        ],
        y_title="utilisation",
    )
    marks = []
    for status, color in (("executed", "seagreen"), ("skipped_cooldown", "orange"),
                          ("failed", "crimson"), ("proposed", "gray"),
                          ("executing", "steelblue")):  # fmt: skip
        chosen = [r for r in changes if r[4] == status]
        if chosen:
            marks.append({"name": f"decision: {status}", "x": [r[0] for r in chosen],
                          "y": [r[3] for r in chosen], "color": color})  # fmt: skip
    emergencies = [r for r in changes if r[6]]
    if emergencies:
        marks.append({"name": "emergency", "x": [r[0] for r in emergencies],
                      "y": [r[3] for r in emergencies], "color": "black", "symbol": "x"})  # fmt: skip
    capacity = timeseries_chart(
        f"{resource.name}: units and decisions",
        lines=[{"name": "units", "x": at, "y": served, "line": {"shape": "hv"}}],
        marks=marks,
        y_title="units",
    )
    return [utilization, capacity]

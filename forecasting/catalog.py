"""The default forecast targets: each prediction type mapped to the telemetry it reads.

These are created by ``targets_sync`` when the telemetry they need exists and
are then the operators' to edit (thresholds, switching one off). Thresholds
are limits set by people (an SLO, a capacity), not measured figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TargetSpec:
    name: str
    prediction_type: str
    source: str  # "series" or "events"
    series_name: str = ""
    series_labels: dict = field(default_factory=dict)
    event_metric: str = ""
    threshold: float | None = None
    threshold_direction: str = "above"


DEFAULT_TARGETS: tuple[TargetSpec, ...] = (
    TargetSpec("daily active users", "user_growth", "events", event_metric="active_users"),
    TargetSpec("new users per day", "user_growth", "events", event_metric="new_users"),
    TargetSpec("events per active user", "engagement", "events", event_metric="events_per_user"),
    TargetSpec(
        "sessions per active user", "engagement", "events", event_metric="sessions_per_user"
    ),
    TargetSpec("latency p95", "performance", "series", series_name="http.latency.p95"),
    TargetSpec(
        "cpu utilization",
        "resource_usage",
        "series",
        series_name="system.cpu.utilization",
        threshold=0.85,
    ),
    TargetSpec(
        "memory utilization",
        "resource_usage",
        "series",
        series_name="system.memory.utilization",
        threshold=0.9,
    ),
    TargetSpec(
        "db connections utilization",
        "resource_usage",
        "series",
        series_name="db.connections.utilization",
        threshold=0.8,
    ),
    TargetSpec("request rate", "traffic", "series", series_name="http.requests.rate"),
    TargetSpec(
        "error rate", "error_rate", "series", series_name="http.errors.ratio", threshold=0.05
    ),
)

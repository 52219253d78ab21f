"""Reads of telemetry shaped for the insights engine (read-only; no writes here).

Everything goes through ``telemetry.selectors`` so the insights system depends on the
telemetry app's public face, not its tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db.models import Min

from insights.engine import behaviour
from telemetry import selectors as tsel
from telemetry.models import DemoIncident, DemoUser

# The system state the anomaly-pattern model watches: (column, series name, labels).
# Columns whose series do not exist are skipped; at least two are needed.
STATE_SERIES: tuple[tuple[str, str, dict], ...] = (
    ("traffic", "http.requests.rate", {}),
    ("cpu", "system.cpu.utilization", {}),
    ("memory", "system.memory.utilization", {}),
    ("latency_p95", "http.latency.p95", {}),
    ("error_ratio", "http.errors.ratio", {}),
    ("db_connections", "db.connections.utilization", {}),
    ("queue_backlog", "celery.queue.backlog", {"queue": "celery"}),
)

EVENT_NAMES_FOR_SEGMENTS = sorted(
    {e for _, events in behaviour.COUNTED_EVENTS for e in events} | set(behaviour.FEATURE_EVENTS)
)


def behaviour_between(
    start: datetime, end: datetime, *, window_days: float | None = None
) -> behaviour.BehaviourMatrix:
    frame = tsel.events_frame(start=start, end=end, names=EVENT_NAMES_FOR_SEGMENTS)
    return behaviour.behaviour_matrix(frame, window_days=window_days)


def cohort_between(
    start: datetime, end: datetime, *, observe_days: float, horizon_days: float
) -> behaviour.Cohort:
    names = [*behaviour.FEATURE_EVENTS, "session_start", "purchase"]
    frame = tsel.events_frame(start=start, end=end, names=names)
    return behaviour.feature_cohort(
        frame,
        end_ts=end.timestamp(),
        observe_days=observe_days,
        horizon_days=horizon_days,
        first_seen=users_first_seen(set(frame["user_id"]), end),
        start_ts=start.timestamp(),
    )


def users_first_seen(user_ids: set[str], end: datetime) -> dict[str, float]:
    """Each user's first event ever (any name, before ``end``), in epoch seconds.

    One grouped query over the (user_id, ts) index; the cohort keeps only users whose
    first event falls inside its window (newcomers), whatever they did before it.
    """
    if not user_ids:
        return {}
    rows = (
        tsel.events_queryset(end=end)
        .filter(user_id__in=list(user_ids))
        .values("user_id")
        .annotate(first=Min("ts"))
        .values_list("user_id", "first")
    )
    return {user: first.timestamp() for user, first in rows}


@dataclass
class StateHistory:
    ts: np.ndarray
    states: np.ndarray
    columns: tuple[str, ...]
    step_seconds: int


def state_history(start: datetime, end: datetime, *, step_seconds: int) -> StateHistory:
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for column, name, labels in STATE_SERIES:
        series = tsel.series_get(name, labels)
        if series is None:
            continue
        ts, values = tsel.series_values_resampled(series.pk, start, end, step_seconds)
        if ts.size:
            columns[column] = (ts, values)
    ts, states, names = behaviour.align_states(columns)
    return StateHistory(ts, states, names, step_seconds)


def incident_windows(start: datetime, end: datetime) -> list[tuple[float, float]]:
    """Known incident windows (the demo's ground truth) overlapping [start, end)."""
    rows = DemoIncident.objects.filter(end__gte=start, start__lt=end).values_list("start", "end")
    return [(a.timestamp(), b.timestamp()) for a, b in rows]


def feature_costs(features: list[str], start: datetime, end: datetime) -> dict[str, float]:
    """Server time a feature costs, in request-milliseconds per minute, where measurable.

    A feature costs what its endpoint ``/api/<feature>`` spends: mean request rate times
    mean p50 latency. Features without such series get no cost (and so are never
    suggested for review: an unknown cost is not a high cost).
    """
    costs: dict[str, float] = {}
    for feature in features:
        labels = {"endpoint": f"/api/{feature}"}
        rate = tsel.series_get("http.requests.rate", labels)
        latency = tsel.series_get("http.latency.p50", labels)
        if rate is None or latency is None:
            continue
        _, r = tsel.series_values(rate.pk, start, end)
        _, lat = tsel.series_values(latency.pk, start, end)
        if r.size and lat.size:
            costs[feature] = float(np.mean(r) * np.mean(lat))
    return costs


def demo_user_kinds(user_ids: np.ndarray) -> dict[str, str]:
    """Ground-truth kinds of demo users (empty outside the demo), for evaluation."""
    return dict(DemoUser.objects.filter(user_id__in=list(user_ids)).values_list("user_id", "kind"))


def window(end: datetime, days: float) -> tuple[datetime, datetime]:
    return end - timedelta(days=days), end

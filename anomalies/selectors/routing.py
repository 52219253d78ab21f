"""Why each playbook did or did not respond to an anomaly: the on-call's "why was I not
paged?", answered from the same checks the scoring job makes (Alertmanager's routing
tree test, `amtool config routes test`, answers it for a label set)."""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase

from django.utils import timezone

from telemetry.labels import labels_normalize

from ..models import SEVERITY_ORDER, Anomaly, ResponseExecution, ResponsePlaybook
from ..validation import RESPONSE_MAX_AGE
from .silences import silenced_by, silences_active


def anomaly_routing(anomaly: Anomaly, now: datetime | None = None) -> list[dict]:
    """One row per playbook, by name: whether it matches the anomaly and, if not, every
    reason why (series name, each label, severity); its execution, if one was made; and,
    for a match without one, what holds it back now (disabled, refused by the checks, out
    of its hours, a silence, too old to page; nothing: the next run responds). Three
    queries."""
    now = now or timezone.now()
    series = anomaly.series
    labels = labels_normalize(series.labels)
    executions = {e.playbook_id: e for e in ResponseExecution.objects.filter(anomaly=anomaly)}
    muted = silenced_by(anomaly, silences_active(now), now)
    rows = []
    for p in ResponsePlaybook.objects.order_by("name"):
        misses = []
        if p.series_name and not fnmatchcase(series.name, p.series_name):
            misses.append(f"series {series.name} does not match {p.series_name!r}")
        for key, value in (p.labels or {}).items():
            if labels.get(key, "") != value:
                has = f"{labels[key]!r}" if key in labels else "none"
                misses.append(f"needs label {key}={value!r}; the series has {has}")
        if SEVERITY_ORDER.get(anomaly.severity, -1) < SEVERITY_ORDER.get(p.min_severity, 0):
            misses.append(f"{anomaly.severity} is below its minimum severity, {p.min_severity}")
        execution = executions.get(p.pk)
        rows.append(
            {
                "playbook": p.pk,
                "name": p.name,
                "action": p.action,
                "matches": not misses,
                "not_matched": misses,
                "execution": None if execution is None else _execution(execution),
                "held_now": (
                    _held_now(p, anomaly, muted, now) if not misses and not execution else []
                ),
            }
        )
    return rows


def _execution(e: ResponseExecution) -> dict:
    return {
        "id": e.pk,
        "status": e.status,
        "attempts": e.attempts,
        "repeats": e.repeats,
        "created_at": e.created_at,
        "error": e.error,
    }


def _held_now(p: ResponsePlaybook, anomaly: Anomaly, muted: list[int], now: datetime) -> list[str]:
    """What stops a playbook that made no execution from making one at the next run."""
    held = []
    if not p.enabled:
        held.append("the playbook is disabled")
    if problems := p.problems():
        fields = ", ".join(sorted(problems))
        held.append(f"the scoring job skips the playbook: its checks refuse {fields}")
    if not p.active_at(now):
        held.append("outside the playbook's active hours: it responds when they begin")
    if muted:
        held.append(f"muted by silence{'s' if len(muted) > 1 else ''} {', '.join(map(str, muted))}")
    if anomaly.status == Anomaly.Status.FALSE_POSITIVE:
        held.append("marked a false positive")
    elif anomaly.ended_at is not None:
        held.append("the anomaly is over")
    elif now - anomaly.last_seen_at > RESPONSE_MAX_AGE:
        held.append("last abnormal over an hour ago: too old to page")
    if p.groups and p.waits_for_group(anomaly, now):
        held.append("its group's first page waits for the rest of the group")
    return held

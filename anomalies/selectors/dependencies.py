"""Inhibition rules suggested by incident history (`engine.dependency_mining`)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from django.db.models import Count, F
from django.utils import timezone

from telemetry.models import Series

from ..engine.dependency_mining import MIN_INCIDENTS, Link, suggest_dependencies
from ..models import Anomaly, RootCauseCandidate
from .groups import usable_inhibition_rules

SUGGESTION_DAYS = 28
MAX_SUGGESTION_DAYS = 90
# Links read at most, the latest first: a fleet-wide incident a day for three months is
# 180,000 links, and the pairs that matter are in the latest.
MAX_LINKS = 50_000

_FIELDS = (
    "cause_anomaly_id",
    "anomaly_id",
    "cause_anomaly__series_id",
    "cause_anomaly__series__name",
    "cause_anomaly__series__labels",
    "anomaly__series_id",
    "anomaly__series__name",
    "anomaly__series__labels",
    "lead_seconds",
)


def inhibition_rule_suggestions(
    *,
    days: int = SUGGESTION_DAYS,
    min_incidents: int = MIN_INCIDENTS,
    now: datetime | None = None,
) -> dict:
    """The inhibition rules the last `days` of incidents support and no enabled rule
    declares yet: metric pairs whose anomalies were the likeliest root cause of the other's
    in at least `min_incidents` incidents, one way. Each comes as the fields of the rule to
    create (`source_series`, `target_series`, `equal`, a `name`) with what supports it.

    Read from the stored rankings (rank 1, on another series; false positives on either
    side are no incident), two queries.
    """
    until = now or timezone.now()
    since = until - timedelta(days=days)
    rows = (
        RootCauseCandidate.objects.filter(
            rank=1, cause_anomaly__isnull=False, anomaly__started_at__gte=since
        )
        .exclude(cause_anomaly__series_id=F("anomaly__series_id"))
        .exclude(anomaly__status=Anomaly.Status.FALSE_POSITIVE)
        .exclude(cause_anomaly__status=Anomaly.Status.FALSE_POSITIVE)
        .order_by("-anomaly_id")
        .values_list(*_FIELDS)[:MAX_LINKS]
    )
    links, series = [], {}
    for cause, effect, cause_series, cause_name, cause_labels, *rest in rows:
        effect_series, effect_name, effect_labels, lead = rest
        links.append(
            Link(
                cause,
                effect,
                cause_name,
                cause_labels or {},
                effect_name,
                effect_labels or {},
                lead,
            )
        )
        # One pair of series per metric pair, to ask the rules whether they declare it.
        series.setdefault(
            (cause_name, effect_name),
            (
                Series(pk=cause_series, name=cause_name, labels=cause_labels or {}),
                Series(pk=effect_series, name=effect_name, labels=effect_labels or {}),
            ),
        )
    counts = dict(
        Anomaly.objects.filter(started_at__gte=since)
        .exclude(status=Anomaly.Status.FALSE_POSITIVE)
        .values("series__name")
        .annotate(n=Count("pk"))
        .values_list("series__name", "n")
    )
    rules = usable_inhibition_rules() if links else []
    suggestions = [
        {"name": s.name, **asdict(s)}
        for s in suggest_dependencies(links, counts, min_incidents=min_incidents)
        if not any(r.holds_back(*series[(s.source_series, s.target_series)]) for r in rules)
    ]
    return {
        "since": since,
        "until": until,
        "links_read": len(links),
        "suggestions": suggestions,
    }

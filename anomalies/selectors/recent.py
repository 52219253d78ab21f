"""Recent anomalies and the incidents they make: what `anomaly/detect` and the
lists read."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet

from telemetry.models import Series

from ..engine.root_cause import group_incidents
from ..matching import pattern_regex, series_matches
from ..models import (
    SEVERITY_ORDER,
    Anomaly,
    RootCauseCandidate,
)
from .causes import explained_rows, likeliest_causes
from .groups import usable_inhibition_rules
from .labels import with_labels


def anomalies_recent(
    *,
    series_id: int | None = None,
    severity: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    state: str | None = None,
    series_pattern: str | None = None,
    labels: dict[str, str] | None = None,
) -> QuerySet[Anomaly]:
    """Anomalies overlapping [since, until), newest first, with causes prefetched; on
    series a name pattern and labels name, as playbooks and silences name them
    (`matching.series_matches`), filtered in SQL so the list paginates."""
    qs = Anomaly.objects.select_related("series").prefetch_related(
        Prefetch(
            "causes",
            queryset=RootCauseCandidate.objects.select_related("series").order_by("rank"),
        ),
        Prefetch("explained", queryset=explained_rows(), to_attr="explained_rows"),
    )
    if series_id is not None:
        qs = qs.filter(series_id=series_id)
    if series_pattern:
        qs = qs.filter(series__name__regex=pattern_regex(series_pattern))
    if labels:
        qs = with_labels(qs, labels)
    if severity:
        qs = qs.filter(severity=severity)
    if status:
        qs = qs.filter(status=status)
    if state:
        qs = qs.filter(anomaly_state_q(state))
    if since is not None:
        qs = qs.filter(Q(ended_at__isnull=True) | Q(ended_at__gte=since))
    if until is not None:
        qs = qs.filter(started_at__lt=until)
    return qs.order_by("-started_at")


# Members listed per incident (all are counted).
INCIDENT_MEMBERS = 100


def incidents_in(anomalies: QuerySet[Anomaly]) -> tuple[int, list[dict]]:
    """The anomalies grouped into incidents by their likeliest causes: (how many incidents,
    those of two anomalies or more, newest first).

    Twenty-five anomalies from one database outage are one thing to deal with, and an
    on-call reads the window as incidents first (PagerDuty and Datadog group alerts the
    same way). The groups follow each anomaly's rank-1 root-cause candidate among the
    anomalies of the window (`engine.root_cause.group_incidents`), and the inhibition
    rules (`declared_links`); the first by onset leads, which is the cause the incident
    was paged for when playbooks inhibit effects.
    """
    rows = list(
        anomalies.order_by("started_at", "pk").values_list(
            "pk", "series_id", "severity", "started_at", "ended_at"
        )
    )
    by_id = {r[0]: r for r in rows}
    blamed = list(
        likeliest_causes()
        .filter(anomaly_id__in=list(by_id), cause_anomaly_id__in=list(by_id))
        .values_list("anomaly_id", "cause_anomaly_id")
    )
    blamed += declared_links(rows)
    groups = group_incidents(list(by_id), blamed)
    shared = [g for g in groups if len(g) > 1]
    names = Series.objects.in_bulk([by_id[g[0]][1] for g in shared])
    incidents = [
        {
            "cause": g[0],
            "cause_series": str(names[by_id[g[0]][1]]),
            "started_at": by_id[g[0]][3],
            "ongoing": any(by_id[k][4] is None for k in g),
            "severity": max((by_id[k][2] for k in g), key=SEVERITY_ORDER.__getitem__),
            "anomalies": len(g),
            "anomaly_ids": g[:INCIDENT_MEMBERS],
        }
        for g in shared
    ]
    incidents.sort(key=lambda i: i["started_at"], reverse=True)
    return len(groups), incidents


def declared_links(rows: list[tuple]) -> list[tuple[int, int]]:
    """(target, source) pairs among the window's anomalies (`incidents_in`'s rows: pk,
    series, severity, started_at, ended_at) that an enabled inhibition rule ties: each
    target to the first source (by onset) on a series the rule names, with the same
    `equal` labels, abnormal at some time the target was. What the rules held back as one
    incident reads as one here too; like the ranking's links, they only join groups.
    Two queries (rules, then the series' names), the second only when a rule exists."""
    rules = usable_inhibition_rules()
    if not rules or len(rows) < 2:
        return []
    series = Series.objects.only("pk", "name", "labels").in_bulk({r[1] for r in rows})
    links = []
    for rule in rules:
        sources = rule.group_sources(rows, lambda r: series[r[1]])
        if not sources:
            continue
        for r in rows:
            if not rule.targets(series[r[1]]):
                continue
            for c in sources.get(rule.equal_key(series[r[1]]), []):
                if c[1] != r[1] and _overlap(c, r):
                    links.append((r[0], c[0]))
                    break
    return links


def _overlap(a: tuple, b: tuple) -> bool:
    """Two rows (…, started_at, ended_at) were abnormal at some common time."""
    return (a[4] is None or a[4] >= b[3]) and (b[4] is None or b[4] >= a[3])


def anomaly_state_q(state: str) -> Q:
    """`Anomaly.state` as a filter: the list, the admin and the overview ask the same."""
    if state == Anomaly.State.CLOSED:
        return Q(ended_at__isnull=False)
    recovering = state == Anomaly.State.RECOVERING
    return Q(ended_at__isnull=True, recovered_at__isnull=not recovering)


# An anomaly someone still has to deal with.
OPEN_STATUSES = (Anomaly.Status.OPEN, Anomaly.Status.ACKNOWLEDGED)


def anomalies_open() -> list[Anomaly]:
    """Anomalies still being dealt with (open or acknowledged), with their series."""
    return list(
        Anomaly.objects.filter(status__in=OPEN_STATUSES)
        .select_related("series")
        .order_by("-started_at")
    )


def anomalies_matching(
    anomalies: list[Anomaly], pattern: str, labels: dict, *, exact_labels: bool = False
) -> list[int]:
    """Ids of those of `anomalies` on series that `pattern` and `labels` name."""
    return [
        a.pk
        for a in anomalies
        if series_matches(
            pattern, labels, a.series.name, a.series.labels, exact_labels=exact_labels
        )
    ]

"""Root causes and effects: what the ranking put each anomaly down to, and the
reverse."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import F, QuerySet

from ..models import (
    Anomaly,
    RootCauseCandidate,
)


def likeliest_causes() -> QuerySet[RootCauseCandidate]:
    """Root-cause rows naming another anomaly as an anomaly's likeliest cause (rank 1;
    ties give several): what inhibition, `explains` and incidents all follow."""
    return RootCauseCandidate.objects.filter(rank=1, cause_anomaly__isnull=False).exclude(
        cause_anomaly_id=F("anomaly_id")
    )


def explained_rows() -> QuerySet[RootCauseCandidate]:
    """The same rows, light enough to prefetch for every anomaly of a list."""
    return likeliest_causes().only("pk", "anomaly_id", "cause_anomaly_id")


def anomalies_explained_by(anomaly: Anomaly) -> list[int]:
    """The anomalies this one is the likeliest cause of (its incident's other alerts: what
    a playbook's `inhibit_effects` did not page on their own)."""
    rows = getattr(anomaly, "explained_rows", None)
    if rows is None:
        rows = explained_rows().filter(cause_anomaly=anomaly)
    return sorted({r.anomaly_id for r in rows})


# How long before a cause's onset its effects' links are read from: an effect's onset can
# precede its cause's by up to the root-cause window (30 minutes either way).
CAUSE_LOOKBACK = timedelta(hours=1)


def effects_of(causes: list[Anomaly], *, depth: int = 4) -> dict[int, list[int]]:
    """For each cause, the ongoing anomalies put down to it, directly or through one
    another (reached through ended ones too), by onset.

    What a notification about a cause lists, and what its incident update counts: a
    database outage's page should name the endpoints it took down, including the error
    ratio whose likeliest cause is one of those endpoints' latency. One query for every
    cause: the links are read from the earliest cause's onset (less the root-cause
    window) on and followed `depth` deep in memory (incidents are shallow; ties at rank 1
    can form cycles, which the visited set stops).
    """
    if not causes:
        return {}
    since = min(c.started_at for c in causes) - CAUSE_LOOKBACK
    links: dict[int, list[tuple[datetime, int, bool]]] = {}
    for cause, effect, started, ended in (
        likeliest_causes()
        .filter(anomaly__started_at__gte=since)
        .values_list("cause_anomaly_id", "anomaly_id", "anomaly__started_at", "anomaly__ended_at")
    ):
        links.setdefault(cause, []).append((started, effect, ended is None))
    # An anomaly an operator ended while its series was still abnormal (resolved too
    # early, or dismissed) is continued by the one the job opened there next, whose onset
    # is traced back into it: the effects put down to the first are the second's too
    # (`Inhibition._supersede` holds them back behind it).
    predecessors: dict[int, list[tuple[int, datetime]]] = {}
    for pk, series, ended in Anomaly.objects.filter(
        series_id__in={c.series_id for c in causes}, ended_at__gte=since
    ).values_list("pk", "series_id", "ended_at"):
        predecessors.setdefault(series, []).append((pk, ended))
    out = {}
    for c in causes:
        before = [
            pk
            for pk, ended in predecessors.get(c.series_id, ())
            if pk != c.pk and ended >= c.started_at
        ]
        seen, frontier, found = {c.pk, *before}, [c.pk, *before], []
        for _ in range(depth):
            step = [e for k in frontier for e in links.get(k, ()) if e[1] not in seen]
            seen.update(e[1] for e in step)
            found += step
            frontier = [e[1] for e in step]
        out[c.pk] = [pk for _, pk, ongoing in sorted(set(found)) if ongoing]
    return out


def anomaly_effects(anomaly: Anomaly) -> list[Anomaly]:
    """`effects_of` one anomaly, with their series, by onset; read once per instance (a
    page counts what its message names, and the message lists them)."""
    cached = getattr(anomaly, "ongoing_effects", None)
    if cached is None:
        ids = effects_of([anomaly])[anomaly.pk]
        cached = anomaly.ongoing_effects = list(
            Anomaly.objects.filter(pk__in=ids).select_related("series").order_by("started_at", "pk")
        )
    return cached


def causes_of(anomalies: list[Anomaly]) -> dict[int, list[Anomaly]]:
    """For each anomaly, the anomalies it is put down to (its rank-1 candidates, ties
    included), with their series, by onset, leaving out twins: two that are each other's
    likeliest cause are one signal seen twice, and "caused by" its twin tells the receiver
    nothing. Two queries for any number of anomalies."""
    out: dict[int, dict[int, Anomaly]] = {a.pk: {} for a in anomalies}
    for r in (
        likeliest_causes()
        .filter(anomaly__in=[a.pk for a in anomalies])
        .select_related("cause_anomaly__series")
    ):
        out[r.anomaly_id][r.cause_anomaly_id] = r.cause_anomaly
    # Twins by series: a cause put down to this anomaly's series (to this anomaly, or to
    # the one an operator resolved there before it reopened) is its twin.
    twins = set(
        likeliest_causes()
        .filter(anomaly_id__in={c for causes in out.values() for c in causes})
        .values_list("anomaly_id", "cause_anomaly__series_id")
    )
    series = {a.pk: a.series_id for a in anomalies}
    return {
        a: sorted(
            (c for pk, c in causes.items() if (pk, series[a]) not in twins),
            key=lambda c: (c.started_at, c.pk),
        )
        for a, causes in out.items()
    }


def anomaly_causes(anomaly: Anomaly) -> list[Anomaly]:
    """`causes_of` one anomaly; read once per instance."""
    cached = getattr(anomaly, "likeliest_cause_anomalies", None)
    if cached is None:
        cached = anomaly.likeliest_cause_anomalies = causes_of([anomaly])[anomaly.pk]
    return cached

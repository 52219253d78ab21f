"""Reads of the anomaly system for the API, the admin and the overview."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.utils import timezone

from telemetry.conf import raw_retention_days
from telemetry.models import Series
from telemetry.selectors import series_points, series_values, to_datetime

from .engine import ThresholdRule
from .engine.root_cause import group_incidents
from .engine.rule_preview import RulePreview, preview_rule
from .matching import series_matches
from .models import (
    SEVERITY_ORDER,
    Anomaly,
    InhibitionRule,
    ResponseExecution,
    RootCauseCandidate,
    Silence,
)
from .validation import NOTIFY_ACTIONS

logger = logging.getLogger(__name__)


def anomalies_recent(
    *,
    series_id: int | None = None,
    severity: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    state: str | None = None,
) -> QuerySet[Anomaly]:
    """Anomalies overlapping [since, until), newest first, with causes prefetched."""
    qs = Anomaly.objects.select_related("series").prefetch_related(
        Prefetch(
            "causes",
            queryset=RootCauseCandidate.objects.select_related("series").order_by("rank"),
        ),
        Prefetch("explained", queryset=explained_rows(), to_attr="explained_rows"),
    )
    if series_id is not None:
        qs = qs.filter(series_id=series_id)
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


def usable_inhibition_rules() -> list[InhibitionRule]:
    """The enabled inhibition rules; a row written from a shell that the checks refuse is
    skipped with a warning, as a playbook is."""
    usable = []
    for r in InhibitionRule.objects.filter(enabled=True):
        if errors := r.problems():
            logger.warning("inhibition rule %r skipped: %s", r.name, errors)
        else:
            usable.append(r)
    return usable


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


def held_back_effects(anomaly: Anomaly, playbook_id: int) -> list[Anomaly]:
    """The ongoing anomalies of `anomaly`'s incident that the playbook held back instead of
    paging: the alerts its notification carries besides its own, as an Alertmanager group
    carries every alert it holds.

    The incident is the anomaly's effects (`anomaly_effects`), or, for a team paged through
    this anomaly because its playbook does not cover the cause (the API team hearing of a
    database outage through its first endpoint), the cause's other effects (`group_root`).
    So are the targets an inhibition rule held back behind it. Effects the playbook does
    not match are another receiver's, and are left out."""
    root = group_root(anomaly, playbook_id)
    effects = [e.pk for e in anomaly_effects(root) if e.pk != anomaly.pk]
    # An inhibition rule's targets are held back behind it without being its effects.
    return list(
        Anomaly.objects.filter(
            Q(pk__in=effects) | Q(responses__result__inhibited_by=root.pk),
            responses__playbook_id=playbook_id,
            responses__status=ResponseExecution.Status.INHIBITED,
            ended_at__isnull=True,
        )
        .exclude(pk=anomaly.pk)
        .select_related("series")
        .order_by("started_at", "pk")
    )


# The page's `result` key holding the held-back effects its receiver was last sent as
# firing in the incident's group (`responses.alertmanager_group`).
GROUP_FIRING = "group_firing"


def ended_since_sent(anomaly: Anomaly, playbook_id: int) -> list[Anomaly]:
    """The held-back effects the playbook's receiver was last sent as firing in
    `anomaly`'s group that have ended since: its next notification sends them resolved,
    once, as Alertmanager's `send_resolved` does."""
    sent = (
        ResponseExecution.objects.filter(playbook_id=playbook_id, anomaly=anomaly)
        .values_list(f"result__{GROUP_FIRING}", flat=True)
        .first()
    )
    if not isinstance(sent, list) or not sent:
        return []
    return list(
        Anomaly.objects.filter(
            pk__in=[pk for pk in sent if isinstance(pk, int)], ended_at__isnull=False
        )
        .select_related("series")
        .order_by("ended_at", "pk")
    )


def sent_and_ended(pages: list[ResponseExecution]) -> dict[int, set[int]]:
    """Page -> the effects its receiver was last sent as firing that have ended since
    (`ended_since_sent`, for many pages in one query): news its group has to send."""
    sent = {
        page.pk: {pk for pk in (page.result or {}).get(GROUP_FIRING, []) if isinstance(pk, int)}
        for page in pages
    }
    ended = (
        set(
            Anomaly.objects.filter(
                pk__in=set().union(*sent.values()), ended_at__isnull=False
            ).values_list("pk", flat=True)
        )
        if any(sent.values())
        else set()
    )
    return {pk: pks & ended for pk, pks in sent.items() if pks & ended}


def group_root(anomaly: Anomaly, playbook_id: int) -> Anomaly:
    """The anomaly whose incident the playbook's page for `anomaly` stands for: its
    likeliest cause when the playbook did not page that cause (a team's page through the
    first effect), the source of an inhibition rule it was paged through
    (`incident_of`), or itself."""
    # Read once per instance and playbook: a notification's description and its group
    # both ask.
    cached = anomaly.__dict__.setdefault("group_roots", {})
    if playbook_id not in cached:
        causes = anomaly_causes(anomaly)
        if causes:
            paged = ResponseExecution.objects.filter(playbook_id=playbook_id, anomaly=causes[0])
            cached[playbook_id] = anomaly if paged.exists() else causes[0]
        else:
            cached[playbook_id] = incident_of(anomaly, playbook_id) or anomaly
    return cached[playbook_id]


def incident_of(anomaly: Anomaly, playbook_id: int) -> Anomaly | None:
    """The source of an inhibition rule whose incident the playbook's page for `anomaly`
    stands for (`result.incident_of`, set when the page was queued): a team that does not
    cover the database hears of its outage once, through its first endpoint."""
    source = (
        ResponseExecution.objects.filter(playbook_id=playbook_id, anomaly=anomaly)
        .values_list("result__incident_of", flat=True)
        .first()
    )
    if not isinstance(source, int):
        return None
    return Anomaly.objects.select_related("series").filter(pk=source).first()


def held_by_rules(roots: set[int], playbooks: set[int]) -> dict[tuple[int, int], set[int]]:
    """(playbook, anomaly) -> the ongoing anomalies an inhibition rule made that playbook
    hold back behind it: the part of an incident the ranking does not know of, which its
    receiver hears of all the same (`incident_size`, `incident_updates_due`). One query."""
    out: dict[tuple[int, int], set[int]] = {}
    if not roots or not playbooks:
        return out
    for playbook, root, anomaly in ResponseExecution.objects.filter(
        playbook_id__in=playbooks,
        status=ResponseExecution.Status.INHIBITED,
        anomaly__ended_at__isnull=True,
        result__has_key="rule",
    ).values_list("playbook_id", "result__inhibited_by", "anomaly_id"):
        if root in roots:
            out.setdefault((playbook, root), set()).add(anomaly)
    return out


def inhibition_rule_holds() -> dict[str, list[int]]:
    """For each inhibition rule (by name), the ongoing anomalies whose pages it holds back
    now, by id: what tells an operator that a rule does something, and a pattern typed
    wrong that it does not. One query; held-back pages of ongoing anomalies are few."""
    held: dict[str, set[int]] = {}
    for rule, anomaly in ResponseExecution.objects.filter(
        status=ResponseExecution.Status.INHIBITED,
        anomaly__ended_at__isnull=True,
        result__has_key="rule",
    ).values_list("result__rule", "anomaly_id"):
        held.setdefault(str(rule), set()).add(anomaly)
    return {rule: sorted(ids) for rule, ids in held.items()}


def inhibition_rules_counted(rules: QuerySet[InhibitionRule]) -> QuerySet[InhibitionRule]:
    """The rules with `holding`: how many ongoing anomalies each holds back now (the
    admin's list, in one query)."""
    held = (
        ResponseExecution.objects.filter(
            status=ResponseExecution.Status.INHIBITED, anomaly__ended_at__isnull=True
        )
        .annotate(rule=KT("result__rule"))
        .filter(rule=OuterRef("name"))
        .order_by()
        .values("rule")
        .annotate(n=Count("anomaly", distinct=True))
        .values("n")
    )
    return rules.annotate(holding=Coalesce(Subquery(held, output_field=IntegerField()), 0))


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


def incident_size(anomaly: Anomaly, playbook_id: int | None = None) -> int:
    """How many ongoing anomalies a notification about this one says its incident holds:
    put down to its likeliest cause if it has one (`responses._cause_clause`), else to
    itself (`_incident_clause`) or, for a team's page through a rule's first target, to
    the rule's source (`incident_of`), and, for a playbook, held back behind that one by
    an inhibition rule. What a page records as told, and what its incident updates
    compare with."""
    causes = anomaly_causes(anomaly)
    root = causes[0] if causes else anomaly
    effects = set()
    if playbook_id is not None and not causes and (source := incident_of(anomaly, playbook_id)):
        # The page is part of the incident it names, as an effect's is of its cause's.
        root, effects = source, {anomaly.pk}
    effects |= {e.pk for e in anomaly_effects(root)}
    if playbook_id is not None:
        effects |= held_by_rules({root.pk}, {playbook_id}).get((playbook_id, root.pk), set())
    return len(effects)


def anomaly_state_q(state: str) -> Q:
    """`Anomaly.state` as a filter: the list, the admin and the overview ask the same."""
    if state == Anomaly.State.CLOSED:
        return Q(ended_at__isnull=False)
    recovering = state == Anomaly.State.RECOVERING
    return Q(ended_at__isnull=True, recovered_at__isnull=not recovering)


# An anomaly someone still has to deal with.
OPEN_STATUSES = (Anomaly.Status.OPEN, Anomaly.Status.ACKNOWLEDGED)


def overview_section() -> dict:
    """Open anomalies by severity, method agreement and response outcomes, from the DB."""
    by_status = dict(Anomaly.objects.values_list("status").annotate(n=Count("id")))
    open_qs = Anomaly.objects.filter(status__in=OPEN_STATUSES)
    open_by_severity = dict(open_qs.values_list("severity").annotate(n=Count("id")))
    reviewed = by_status.get(Anomaly.Status.FALSE_POSITIVE, 0) + by_status.get(
        Anomaly.Status.RESOLVED, 0
    )
    executions = dict(ResponseExecution.objects.values_list("status").annotate(n=Count("id")))
    finished = executions.get("succeeded", 0) + executions.get("failed", 0)
    return {
        "open_anomalies": open_qs.count(),
        # Of those, the ones calm again and waiting out their quiet period: still open (a
        # relapse resumes them), but not what the on-call is firefighting.
        "recovering_anomalies": open_qs.filter(anomaly_state_q(Anomaly.State.RECOVERING)).count(),
        "open_by_severity": {s: open_by_severity.get(s, 0) for s in Anomaly.Severity.values},
        "anomalies_by_status": {s: by_status.get(s, 0) for s in Anomaly.Status.values},
        "false_positive_rate": (
            by_status.get(Anomaly.Status.FALSE_POSITIVE, 0) / reviewed if reviewed else None
        ),
        "responses_by_status": executions,
        "response_success_rate": (executions.get("succeeded", 0) / finished if finished else None),
        "active_silences": Silence.objects.filter(silence_in_force(timezone.now())).count(),
        "noisiest_series": noisiest_series(),
        "on_call": on_call_report(),
    }


# The period the on-call figures cover: PagerDuty's and Opsgenie's reports default to a month.
ON_CALL_DAYS = 30


def on_call_report(*, now: datetime | None = None, days: int = ON_CALL_DAYS) -> dict:
    """How the on-call has been doing over the last `days`: MTTA and MTTR, the figures an
    incident review starts from (PagerDuty's analytics, Opsgenie's reports).

    Over the anomalies that began in the period and paged-worthy (warning or critical):
    how many, how many an operator acknowledged or resolved (`confirmed_at`) and the
    median and 90th percentile of the time from detection to that; the same of the time
    from onset to recovery for those that ended (false positives excluded: their end is a
    dismissal, not a recovery). And what the playbooks did with them: pages sent, and
    pages held back by one page per incident (`inhibit_effects`: their cause was paged or
    silenced, or another of its effects was paged), which is what that spared the
    on-call. Seconds; None where there is nothing to measure.
    """
    until = now or timezone.now()
    since = until - timedelta(days=days)
    rows = list(
        Anomaly.objects.filter(
            started_at__gte=since,
            started_at__lt=until,
            severity__in=(Anomaly.Severity.WARNING, Anomaly.Severity.CRITICAL),
        ).values_list("started_at", "detected_at", "confirmed_at", "ended_at", "status")
    )
    fp = Anomaly.Status.FALSE_POSITIVE
    to_ack = [
        max((confirmed - detected).total_seconds(), 0.0)
        for _, detected, confirmed, _, status in rows
        if confirmed is not None and status != fp
    ]
    to_recover = [
        (ended - started).total_seconds()
        for started, _, _, ended, status in rows
        if ended is not None and status != fp
    ]
    pages = dict(
        ResponseExecution.objects.filter(
            anomaly__started_at__gte=since,
            anomaly__started_at__lt=until,
            playbook__action__in=NOTIFY_ACTIONS,
            status__in=(ResponseExecution.Status.SUCCEEDED, ResponseExecution.Status.INHIBITED),
        )
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return {
        "days": days,
        "anomalies": len(rows),
        "acknowledged": len(to_ack),
        "false_positives": sum(1 for *_, status in rows if status == fp),
        "time_to_acknowledge_seconds": _median_and_p90(to_ack),
        "time_to_recover_seconds": _median_and_p90(to_recover),
        "pages_sent": pages.get(ResponseExecution.Status.SUCCEEDED, 0),
        "pages_held_back": pages.get(ResponseExecution.Status.INHIBITED, 0),
    }


def _median_and_p90(seconds: list[float]) -> dict:
    if not seconds:
        return {"median": None, "p90": None}
    median, p90 = np.percentile(seconds, [50, 90])
    return {"median": round(float(median), 1), "p90": round(float(p90), 1)}


# The series an operator should look at first when alerts feel noisy: how many, over what.
NOISY_DAYS = 7
NOISY_TOP = 5


def noisiest_series(*, now: datetime | None = None) -> list[dict]:
    """The series that opened the most anomalies in the last week (at least two), with
    how many were called false positives and the detection tuning they have now.

    PagerDuty's "noisy services" and Datadog's monitor-noise reports answer the same
    question: where to spend a tuning (`anomaly/tunings/preview` says what it would do)
    or a rule. Counted from the database; none of it is stored.
    """
    from .tunings import tuning_of, usable_tunings  # tunings reads series through here

    since = (now or timezone.now()) - timedelta(days=NOISY_DAYS)
    rows = list(
        Anomaly.objects.filter(started_at__gte=since)
        .values("series_id")
        .annotate(
            opened=Count("id"),
            false_positives=Count("id", filter=Q(status=Anomaly.Status.FALSE_POSITIVE)),
        )
        .filter(opened__gte=2)
        .order_by("-opened", "-false_positives", "series_id")[:NOISY_TOP]
    )
    series = Series.objects.in_bulk([r["series_id"] for r in rows])
    tunings = usable_tunings() if rows else []
    out = []
    for r in rows:
        s = series[r["series_id"]]
        tuning = tuning_of(s, tunings)
        out.append(
            {
                "series_id": s.pk,
                "series": str(s),
                "anomalies": r["opened"],
                "false_positives": r["false_positives"],
                "tuning": tuning.name if tuning is not None else None,
            }
        )
    return out


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


def series_matching(pattern: str, labels: dict, *, exact_labels: bool = False) -> list[Series]:
    """Every series a pattern and labels name, by name then labels, as scoring, silences
    and playbooks match them (`matching.series_matches`): one pass over names and labels."""
    return [
        s
        for s in Series.objects.only("pk", "name", "labels", "labels_key")
        .order_by("name", "labels_key")
        .iterator()
        if series_matches(pattern, labels, s.name, s.labels, exact_labels=exact_labels)
    ]


# How many matching series a preview names; the count covers them all.
PREVIEW_NAMES = 20


def silence_preview(*, series_pattern: str, labels: dict, exact_labels: bool = False) -> dict:
    """What a silence with this pattern and these labels would cover, before it exists:
    the series it matches (a count and the first names) and their open anomalies.

    One pass over the series' names and labels, not their samples: a typo in a pattern
    shows as 0 series at once.
    """
    matched = series_matching(series_pattern, labels, exact_labels=exact_labels)
    return {
        "series": len(matched),
        "series_names": [str(series) for series in matched[:PREVIEW_NAMES]],
        "open_anomalies": anomalies_matching(
            anomalies_open(), series_pattern, labels, exact_labels=exact_labels
        ),
    }


# Pairs an inhibition rule's preview lists at most; the count covers them all.
PREVIEW_PAIRS = 100


def inhibition_rule_preview(rule: InhibitionRule) -> dict:
    """What a rule with these fields would tie, before it exists: the series its source
    and its target name (a count and the first names: a typo shows as 0 at once), and
    the ongoing anomalies it would hold back now, each with its source (for a playbook
    that paged the source, at least as severe as the target)."""
    sources = series_matching(rule.source_series, rule.source_labels)
    targets = series_matching(rule.target_series, rule.target_labels)
    ongoing = [a for a in anomalies_open() if a.ended_at is None]
    by_key = rule.group_sources(ongoing, lambda a: a.series)
    pairs = []
    for a in ongoing:
        if not rule.targets(a.series):
            continue
        for c in by_key.get(rule.equal_key(a.series), []):
            if (
                c.series_id != a.series_id
                and SEVERITY_ORDER[a.severity] <= SEVERITY_ORDER[c.severity]
            ):
                pairs.append({"anomaly": a.pk, "held_back_behind": c.pk})
                break
    return {
        "source_series": len(sources),
        "source_names": [str(s) for s in sources[:PREVIEW_NAMES]],
        "target_series": len(targets),
        "target_names": [str(s) for s in targets[:PREVIEW_NAMES]],
        "would_hold_back": len(pairs),
        "pairs": pairs[:PREVIEW_PAIRS],
    }


def silence_in_force(at: datetime) -> Q:
    """The condition for a silence to be in force at `at`, for filter() or exclude()."""
    return Q(starts_at__lte=at, ends_at__gt=at)


def silences_active(at: datetime) -> list[Silence]:
    """The silences in force at `at`; few at any time, so callers match them in Python."""
    return silences_overlapping(since=at, until=at)


def silences_overlapping(*, since: datetime, until: datetime) -> list[Silence]:
    """The silences in force at some moment of [since, until]."""
    return list(Silence.objects.filter(starts_at__lte=until, ends_at__gt=since))


def silenced_by(anomaly: Anomaly, silences: list[Silence], at: datetime) -> list[int]:
    """Ids of the silences among `silences` that mute this anomaly at `at`.

    An ongoing anomaly is muted by a silence in force at `at`; one that has ended, by a
    silence that was in force when it ended: an incident that ended under a silence is
    never announced (a "resolved" message for an alert nobody was sent would only
    confuse the receiver), and one that ended before the silence began is not its
    business.
    """
    series = anomaly.series
    moment = at if anomaly.ended_at is None else anomaly.ended_at
    return [s.pk for s in silences if s.is_active(moment) and s.matches(series.name, series.labels)]


# Series points a chart page draws at most; a denser window is drawn as bucket means.
MAX_CHART_POINTS = 2000
# The bucket widths a chart may use (seconds); whole hours read the hourly rollups.
CHART_STEPS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400)


def anomaly_context(
    anomaly: Anomaly, *, before: timedelta | None = None, after: timedelta | None = None
) -> dict:
    """The series around an anomaly plus its expected band and abnormal points, as arrays.

    The band (expected +- 3 scales) is what the detector believed at each abnormal point,
    kept in `Anomaly.points` when it was scored, so the chart shows the detector's view
    at the time rather than a re-fit with hindsight. The series itself is read raw when
    that is at most `MAX_CHART_POINTS` points; a denser window is drawn as bucket means,
    and one reaching past the raw retention as hourly means from the rollups (read raw,
    an anomaly older than 90 days had an empty chart, and a one-second series sent
    25,000 points to the browser).
    """
    before = before or timedelta(hours=6)
    after = after or timedelta(hours=1)
    start = anomaly.started_at - before
    end = (anomaly.ended_at or anomaly.last_seen_at) + after
    step, raw = _chart_step(anomaly.series_id, start, end)
    if step is None:
        (ts, values), source = raw, "raw"
    else:
        read = series_points(anomaly.series_id, start=start, end=end, step_seconds=step)
        ts, values = read.ts, read.values
        source = f"{_duration(step)} means" + (
            " (hourly rollups)" if "rollup" in read.source else ""
        )
    pts = np.asarray(anomaly.points, dtype=float).reshape(-1, 5)
    return {
        "ts": ts,
        "values": values,
        "source": source,
        "point_ts": pts[:, 0],
        "point_values": pts[:, 1],
        "lower": pts[:, 2] - 3.0 * pts[:, 3],
        "upper": pts[:, 2] + 3.0 * pts[:, 3],
        "expected": pts[:, 2],
    }


def _chart_step(
    series_id: int, start: datetime, end: datetime
) -> tuple[float | None, tuple[np.ndarray, np.ndarray] | None]:
    """(bucket width or None for raw, the raw points when raw will do)."""
    span = max((end - start).total_seconds(), 1.0)
    if start < timezone.now() - timedelta(days=raw_retention_days()):
        # Raw samples this old are gone; hourly rollups hold them.
        return next(
            (s for s in CHART_STEPS if s >= 3600 and span / s <= MAX_CHART_POINTS), 86400
        ), None
    raw = series_values(series_id, start=start, end=end, limit=MAX_CHART_POINTS + 1)
    if raw[0].size <= MAX_CHART_POINTS:
        return None, raw
    return next((s for s in CHART_STEPS if span / s <= MAX_CHART_POINTS), CHART_STEPS[-1]), None


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return "hourly" if hours == 1 else f"{hours}-hour"
    return f"{int(seconds // 60)}-minute"


# A rule preview reads every matching series' history: at most this many series (the
# first by name), and at most this many days; each series lists its newest episodes.
RULE_PREVIEW_MAX_SERIES = 50
RULE_PREVIEW_MAX_DAYS = 30
RULE_PREVIEW_MAX_EPISODES = 100
# And it stops once it has read this many points: a month of one-minute points on 50
# series is 2.2 million rows and 11-13 s on PostgreSQL (fetching dominates), too long
# for a request; the series not read are counted as capped.
RULE_PREVIEW_MAX_POINTS = 1_000_000
# History read before the window, beyond the rule's duration, so that a breach going on
# at the window's start is measured from its real start (see `rule_preview`).
_PREVIEW_MARGIN = timedelta(days=1)


def rule_preview(
    *,
    series_name: str,
    labels: dict,
    above: float | None,
    below: float | None,
    min_duration_seconds: int = 0,
    days: int = 7,
    now: datetime | None = None,
) -> dict:
    """Where a detection rule would have fired over the last `days`, before it is saved.

    The series are those live scoring applies the rule to (`matching.series_matches`, as
    `services.scoring` matches them) and the firing is the engine's own evaluation
    (`engine.rule_preview`), so the preview cannot disagree with the job. History comes
    from telemetry's `series_points`: raw samples, and hourly rollups for any part older
    than the raw retention (the answer says which). A breach going on when the window
    opens is measured from before it: the history is read from `min_duration_seconds`
    (capped at the longest window) plus a day before the window.
    """
    now = now or timezone.now()
    since = now - timedelta(days=days)
    lookback = min(timedelta(seconds=min_duration_seconds), timedelta(days=RULE_PREVIEW_MAX_DAYS))
    read_from = since - lookback - _PREVIEW_MARGIN
    rule = ThresholdRule(
        name="preview", above=above, below=below, min_duration_seconds=min_duration_seconds
    )
    matched = series_matching(series_name, labels)
    rows = []
    sources: set[str] = set()
    raw_from = rollup_step = None
    read = 0
    for s in matched[:RULE_PREVIEW_MAX_SERIES]:
        if read >= RULE_PREVIEW_MAX_POINTS:
            break
        points = series_points(s.pk, start=read_from, end=now + timedelta(microseconds=1))
        read += points.ts.size
        raw_from, coarse = points.raw_from, points.rollup_step
        if coarse is not None:
            rollup_step = coarse
        preview = preview_rule(
            points.ts,
            points.values,
            rule,
            since=since.timestamp(),
            coarse_until=raw_from.timestamp() if coarse is not None else None,
            coarse_step=coarse,
            limit=RULE_PREVIEW_MAX_EPISODES,
        )
        in_window = int((points.ts >= since.timestamp()).sum())
        if in_window:
            sources.add(points.source)
        rows.append(_rule_preview_row(s, preview, in_window, points.source))
    rows.sort(key=lambda r: -r["count"])  # stable: the noisiest first, then by name
    answer = {
        "since": since,
        "until": now,
        "days": days,
        "series_matched": len(matched),
        "series_previewed": len(rows),
        "capped": len(matched) > len(rows),
        "count": sum(r["count"] for r in rows),
        "series_firing": sum(r["count"] > 0 for r in rows),
        # Each series says where its points came from; this says whether any were rollups.
        "source": "rollup+raw" if any("rollup" in x for x in sources) else "raw",
        "raw_from": raw_from,
        "rollup_step_seconds": rollup_step,
        "series": rows,
    }
    if answer["capped"]:
        answer["note"] = (
            f"{len(matched)} series match; only the first {len(rows)} by name were previewed "
            f"(at most {RULE_PREVIEW_MAX_SERIES} series and about {RULE_PREVIEW_MAX_POINTS:,} "
            "points): narrow the pattern or the labels, or shorten the window, to see the others"
        )
    return answer


def _rule_preview_row(series: Series, preview: RulePreview, points: int, source: str) -> dict:
    return {
        "series_id": series.pk,
        "series": str(series),
        "points": points,
        "source": source if points else "raw",
        "step_seconds": preview.step_seconds if np.isfinite(preview.step_seconds) else None,
        "breaching_points": preview.breaching_points,
        "firing_points": preview.firing_points,
        "count": preview.count,
        "episodes": [
            {
                "started_at": to_datetime(e.started_at),
                "start_known": e.start_known,
                "fired_at": to_datetime(e.fired_at),
                "ended_at": to_datetime(e.ended_at),
                "ongoing": e.ongoing,
                "duration_seconds": e.ended_at - e.started_at,
                "peak": e.peak,
                "points": e.points,
            }
            for e in preview.episodes
        ],
    }

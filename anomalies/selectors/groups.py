"""What a page's notification group holds: the effects and rule targets a playbook
held back behind it, and what its receiver was last sent."""

from __future__ import annotations

import logging

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce

from ..models import (
    Anomaly,
    InhibitionRule,
    ResponseExecution,
    ResponsePlaybook,
)
from .causes import anomaly_causes, anomaly_effects
from .labels import with_labels

logger = logging.getLogger(__name__)


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


# Why a page held back behind another is not among the ranking's effects: an inhibition
# rule's name, or the playbook's notification group (`group_by`), in its `result`.
BY_RULE = ("rule",)
BY_RULE_OR_GROUP = ("rule", "group")


def held_by_rules(
    roots: set[int], playbooks: set[int], *, kinds: tuple[str, ...] = BY_RULE
) -> dict[tuple[int, int], set[int]]:
    """(playbook, anomaly) -> the ongoing anomalies an inhibition rule (or, with
    `BY_RULE_OR_GROUP`, the playbook's `group_by`) made that playbook hold back behind it:
    the part of an incident the ranking does not know of, which its receiver hears of all
    the same (`incident_size`, `incident_updates_due`). One query."""
    out: dict[tuple[int, int], set[int]] = {}
    if not roots or not playbooks:
        return out
    keyed = Q()
    for kind in kinds:
        keyed |= Q(result__has_key=kind)
    for playbook, root, anomaly in (
        ResponseExecution.objects.filter(
            keyed,
            playbook_id__in=playbooks,
            status=ResponseExecution.Status.INHIBITED,
            anomaly__ended_at__isnull=True,
        )
        .values_list("playbook_id", "result__inhibited_by", "anomaly_id")
        .distinct()
    ):
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


def group_members(anomaly: Anomaly, playbook: ResponsePlaybook) -> list[Anomaly]:
    """The other ongoing anomalies of `anomaly`'s notification group under the playbook's
    `group_by` that its receiver has been told of, paged or held back: every alert the
    group's notification carries, as Alertmanager's does. Whichever member a notification
    is about (the first paged, the next one paged once the first ended, or the first's
    resolution), it carries the rest, so the group fires while any of them does. Empty
    for a playbook that does not group by labels."""
    group = playbook.group_of(anomaly.series)
    if group is None or playbook.pk is None:
        return []
    # Read once per instance and playbook: a notification's description and its alerts
    # both ask.
    cached = anomaly.__dict__.setdefault("group_members", {})
    if playbook.pk not in cached:
        cached[playbook.pk] = _group_members(anomaly, playbook.pk, group)
    return cached[playbook.pk]


def _group_members(anomaly: Anomaly, playbook_id: int, group: dict[str, str]) -> list[Anomaly]:
    told = ResponseExecution.objects.filter(playbook_id=playbook_id).exclude(
        Q(status__in=(ResponseExecution.Status.FAILED, ResponseExecution.Status.CANCELLED))
        | Q(status=ResponseExecution.Status.RETRYING, attempts=0)
    )
    members = Anomaly.objects.filter(
        pk__in=told.values("anomaly_id"), ended_at__isnull=True
    ).exclude(Q(pk=anomaly.pk) | Q(status=Anomaly.Status.FALSE_POSITIVE))
    members = with_labels(members, group)
    return list(members.select_related("series").order_by("started_at", "pk"))


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
        # A `group_by` group's members are held back behind the page's own anomaly.
        held = held_by_rules({root.pk, anomaly.pk}, {playbook_id}, kinds=BY_RULE_OR_GROUP)
        effects |= held.get((playbook_id, root.pk), set())
        effects |= held.get((playbook_id, anomaly.pk), set())
    return len(effects)

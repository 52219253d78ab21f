"""One page per incident: which pages a playbook holds back, and when it tells more.

A database that runs out of connections makes every endpoint abnormal within minutes.
A playbook with `inhibit_effects` pages the cause and holds back the anomalies whose
likeliest cause it is (`Inhibition`, as Alertmanager's inhibit rules), pages an effect
that outlives its cause as its own problem (its `effect_grace_seconds`), and tells the
cause's receiver when more of the incident goes on (`incident_updates_due`, as
Alertmanager's `group_interval`). A silenced cause inhibits as a paged one does; a team
whose playbook does not match the cause, and the effects of a cause dismissed as a false
positive, are paged once per incident, through its first effect. A playbook that groups by
labels (`group_by`) holds back the later anomalies of a group behind its first page, and
pages the next one when that ends, so the group lives until its last anomaly does.
`playbooks.queue_responses` drives them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db.models import Q
from django.utils import timezone

from ..matching import labels_text
from ..models import (
    SEVERITY_ORDER,
    Anomaly,
    InhibitionRule,
    ResponseExecution,
    ResponsePlaybook,
)
from ..selectors import (
    BY_RULE_OR_GROUP,
    GROUP_FIRING,
    causes_of,
    effects_of,
    held_by_rules,
    likeliest_causes,
    sent_and_ended,
)
from ..validation import MAX_EFFECT_GRACE_SECONDS, NOTIFY_ACTIONS

# An execution the broker refused is "retrying" with no attempt made; the next scoring run
# that matches its anomaly queues it again.
NOT_QUEUED = ResponseExecution.Status.RETRYING
CANCELLED = ResponseExecution.Status.CANCELLED
INHIBITED = ResponseExecution.Status.INHIBITED


# Sources an inhibition rule keeps per target: the first that the playbook paged holds
# the page back, so a few suffice.
MAX_DECLARED_SOURCES = 20

SOURCE_FIELDS = (
    "pk",
    "series_id",
    "severity",
    "status",
    "started_at",
    "ended_at",
    "last_seen_at",
    "series__name",
    "series__labels",
    "series__labels_key",
)

# What a held-back execution says (`Inhibition.why`).
PAGED = "its incident was paged by this playbook"
OUTLIVES = "sent if this anomaly outlives it"
GROUPED = (
    "goes on; this anomaly is sent in the group's notifications, and paged as the group's "
    "next page if it outlives it"
)


class Sent(NamedTuple):
    """What an anomaly's execution of one playbook has done so far."""

    pk: int
    status: str
    attempts: int
    told: str
    notified_at: datetime | None
    finished_at: datetime | None
    # The cause an inhibited execution was held back behind, and why (its `result`).
    inhibited_by: int | None = None
    reason: str | None = None


def tells(status: str, attempts: int) -> bool:
    """The receiver has been told of the anomaly, or will be (sent, on its way, inhibited
    by a cause it was told of). Failed, cancelled or refused by the broker: not told."""
    if status == NOT_QUEUED:
        return attempts > 0
    return status not in (ResponseExecution.Status.FAILED, CANCELLED)


def inhibited_execution(
    p: ResponsePlaybook,
    a: Anomaly,
    cause: Anomaly,
    *,
    why: str,
    pk: int | None = None,
    rule: str | None = None,
    group: dict[str, str] | None = None,
) -> ResponseExecution:
    """A page held back behind `cause` (`pk`: an execution held back before, rehomed),
    saying `why` (`Inhibition.why`), and the inhibition rule that put it there, if one
    did rather than the root-cause ranking, or the playbook's notification group
    (`group_by`) that carries it."""
    result: dict = {"inhibited_by": cause.pk, "cause_series": str(cause.series), "reason": why}
    link = "its likeliest root cause"
    if rule is not None:
        result["rule"] = rule
        link = f"its source by inhibition rule {rule!r}"
    elif group is not None:
        result["group"] = group
        link = f"the first of its group {labels_text(group)} this playbook paged"
    return ResponseExecution(
        pk=pk,
        playbook=p,
        anomaly=a,
        status=INHIBITED,
        result=result,
        error=f"not sent: {link}, anomaly {cause.pk} on {cause.series}, {why}",
    )


class Inhibition:
    """Which anomalies a playbook should not page because it has paged their cause.

    A database that runs out of connections makes every endpoint's latency and error
    ratio abnormal within minutes: 24 critical anomalies, 24 pages at 3 a.m. for one
    incident. Alertmanager's inhibit rules mute the alerts a firing one explains; here the
    explanation is the root-cause ranking (causes.py): an anomaly whose rank-1 candidate is
    another ongoing anomaly, as severe or more, that the same playbook has paged (or
    inhibited in turn, so a chain pages once) is recorded as INHIBITED instead of sent.
    Re-judged at every run that touches it: if the cause ends first, or the ranking later
    names no other cause, it is paged then. Only notifications are inhibited; a task
    playbook runs for every anomaly, as its task may act per series.

    What counts as told of the cause: its page (`told`); a silence on it
    (`_count_silenced_causes`); for a playbook that does not match it, a page for another
    of its effects (`via_effects`). A cause that ended while its series is abnormal again
    is replaced by the series' new anomaly (`_supersede`).
    """

    def __init__(
        self,
        anomalies: list[Anomaly],
        playbooks: list[ResponsePlaybook],
        existing: dict[tuple[int, int], Sent],
        *,
        silenced: Callable[[Anomaly], bool] | None = None,
        rules: list[InhibitionRule] | None = None,
        now: datetime | None = None,
    ) -> None:
        inhibiting = [p for p in playbooks if p.inhibit_effects and p.action in NOTIFY_ACTIONS]
        grouping = [p for p in playbooks if p.groups]
        self.inhibits = {p.pk for p in inhibiting}
        self.on = self.inhibits | {p.pk for p in grouping}
        # Playbook -> group (its label values) -> the ongoing anomalies it paged in that
        # group, by onset: the first holds the group's later anomalies back (`group_by`).
        self.leaders: dict[int, dict[tuple[str, ...], list[Anomaly]]] = {}
        # (playbook, anomaly) -> the group whose page holds the anomaly's page back now.
        self.grouped: dict[tuple[int, int], dict[str, str]] = {}
        self.silenced: set[int] = set()
        # Playbook -> cause -> the highest severity the playbook has told of the cause's
        # effects (`tell`): how a receiver not paged for the cause hears of its incident.
        self.via_effects: dict[int, dict[int, int]] = {}
        # The same, counting only pages whose anomaly goes on: what holds an effect back.
        self.via_ongoing: dict[int, dict[int, int]] = {}
        self.causes: dict[int, list[Anomaly]] = {}
        # Anomaly -> the sources an inhibition rule puts it behind, with the rule's name.
        self.declared: dict[int, list[tuple[Anomaly, str]]] = {}
        # (playbook, anomaly) pairs whose receiver was told of the anomaly, or will be.
        self.told: set[tuple[int, int]] = set()
        if not self.on or not anomalies:
            return
        if grouping:
            self._load_group_leaders(grouping, anomalies)
        for c in (
            likeliest_causes().filter(anomaly__in=anomalies).select_related("cause_anomaly__series")
        ):
            self.causes.setdefault(c.anomaly_id, []).append(c.cause_anomaly)
        if rules:
            self._declare(anomalies, rules, now or timezone.now())
        cause_ids = {c.pk for cs in self.causes.values() for c in cs}
        cause_ids |= {c.pk for cs in self.declared.values() for c, _ in cs}
        told = {(p, a) for (p, a), sent in existing.items() if tells(sent.status, sent.attempts)}
        held = {pa: sent.inhibited_by for pa, sent in existing.items() if sent.status == INHIBITED}
        for p, a, status, attempts, by in ResponseExecution.objects.filter(
            anomaly_id__in=cause_ids - {a.pk for a in anomalies}, playbook_id__in=self.on
        ).values_list("playbook_id", "anomaly_id", "status", "attempts", "result__inhibited_by"):
            if tells(status, attempts):
                told.add((p, a))
            if status == INHIBITED:
                held[(p, a)] = by
        self.told = told
        superseded = self._supersede({by for by in held.values() if isinstance(by, int)})
        # Held back behind a cause that has been superseded: the receiver was told of an
        # incident an operator since resolved, not of the one going on now.
        self.told -= {pa for pa, by in held.items() if by in superseded}
        if silenced is not None:
            self._count_silenced_causes(inhibiting, silenced)
        self._count_pages_of_effects(cause_ids)

    def _declare(
        self, anomalies: list[Anomaly], rules: list[InhibitionRule], now: datetime
    ) -> None:
        """`declared` from the rules: for each anomaly a rule targets, the anomalies on its
        source series that go on, or ended within the longest grace an effect may have
        (what `in_tail` asks of an ended source). One query, and only when a rule targets
        one of the anomalies. Each rule's sources are matched once and grouped by what
        `equal` compares, then each target looks its group up, keeping the first
        `MAX_DECLARED_SOURCES` (ongoing, most severe, earliest first): a rule as wide as
        `*` over `*` in a fleet-wide incident stays linear in the anomalies."""
        targeted = {a.pk: [r for r in rules if r.targets(a.series)] for a in anomalies}
        used = {r.pk: r for rs in targeted.values() for r in rs}
        if not used:
            return
        # A pattern's literal start narrows the read in SQL (`db.*`: names from "db."); the
        # pattern itself is matched below.
        named = Q()
        for r in used.values():
            named |= Q(series__name__startswith=re.split(r"[*?\[]", r.source_series, maxsplit=1)[0])
        sources = sorted(
            Anomaly.objects.filter(
                Q(ended_at__isnull=True)
                | Q(ended_at__gte=now - timedelta(seconds=MAX_EFFECT_GRACE_SECONDS)),
                named,
            )
            .exclude(status=Anomaly.Status.FALSE_POSITIVE)
            .select_related("series")
            # What inhibition reads of a source; an incident's points stay in the database.
            .only(*SOURCE_FIELDS),
            key=lambda c: (c.ended_at is not None, -SEVERITY_ORDER[c.severity], c.started_at, c.pk),
        )
        groups = {r.pk: r.group_sources(sources, lambda c: c.series) for r in used.values()}
        for a in anomalies:
            found: dict[int, tuple[Anomaly, str]] = {}
            for r in targeted[a.pk]:
                group = groups[r.pk].get(r.equal_key(a.series), [])
                for c in group[: MAX_DECLARED_SOURCES + 1]:
                    if c.series_id != a.series_id and c.pk not in found:
                        found[c.pk] = (c, r.name)
            if found:
                self.declared[a.pk] = list(found.values())[:MAX_DECLARED_SOURCES]

    def _load_group_leaders(
        self, grouping: list[ResponsePlaybook], anomalies: list[Anomaly]
    ) -> None:
        """`leaders`: for each grouping playbook, the ongoing anomalies it has paged (not
        held back), in the groups this run's anomalies belong to. Only a page counts: one
        held back in its group is carried by the group's page, and counting it too would
        let two held-back members hold each other back, paging neither. Two queries."""
        wanted = {
            p.pk: {_key(p.group_of(a.series)) for a in anomalies if p.matches(a)} for p in grouping
        }
        rows = [
            (playbook, anomaly)
            for playbook, anomaly, status, attempts in ResponseExecution.objects.filter(
                playbook_id__in=[p for p, keys in wanted.items() if keys],
                anomaly__ended_at__isnull=True,
            )
            .exclude(status=INHIBITED)
            .exclude(anomaly__status=Anomaly.Status.FALSE_POSITIVE)
            .values_list("playbook_id", "anomaly_id", "status", "attempts")
            if tells(status, attempts)
        ]
        if not rows:
            return
        paged = Anomaly.objects.select_related("series").only(*SOURCE_FIELDS, "recovered_at")
        by_pk = paged.in_bulk({a for _, a in rows})
        by_playbook = {p.pk: p for p in grouping}
        for playbook, anomaly in sorted(rows, key=lambda r: (by_pk[r[1]].started_at, r[1])):
            a = by_pk[anomaly]
            key = _key(by_playbook[playbook].group_of(a.series))
            if key in wanted[playbook]:
                self.leaders.setdefault(playbook, {}).setdefault(key, []).append(a)

    def group_of(self, p: ResponsePlaybook, a: Anomaly) -> dict[str, str] | None:
        """The playbook's notification group whose page holds `a` back (set by `cause`)."""
        return self.grouped.get((p.pk, a.pk))

    def rule_of(self, a: Anomaly, cause: Anomaly) -> str | None:
        """The inhibition rule that declares `cause` a source of `a`, if one does: named
        even where the ranking puts `a` down to `cause` too, since the ranking reads the
        rules (`services.causes`) and the operator should see which declaration held the
        page back."""
        return next((name for c, name in self.declared.get(a.pk, []) if c.pk == cause.pk), None)

    def _supersede(self, inhibitors: set[int]) -> set[int]:
        """Put a series' ongoing anomaly in the place of an ended one among the causes.

        An operator who resolves the database's anomaly while it is still abnormal sees
        it open again at the next run (as Datadog's monitors re-trigger). Its effects' root
        causes still name the resolved anomaly: judged on it, they were paged as it ended
        while the new one, blamed on a twin held back behind the resolved one, was not.
        The new anomaly on the same series is the cause going on. Returns the inhibitors
        (of `inhibitors`) that have been superseded.
        """
        ended = {
            c.pk: c.series_id for cs in self.causes.values() for c in cs if c.ended_at is not None
        }
        ended.update(
            Anomaly.objects.filter(
                pk__in=inhibitors - set(ended), ended_at__isnull=False
            ).values_list("pk", "series_id")
        )
        if not ended:
            return set()
        successor = {
            n.series_id: n
            for n in Anomaly.objects.filter(
                series_id__in=set(ended.values()), ended_at__isnull=True
            ).select_related("series")
        }
        for a, cs in self.causes.items():
            mapped = [successor.get(c.series_id, c) if c.pk in ended else c for c in cs]
            self.causes[a] = list({c.pk: c for c in mapped if c.pk != a}.values())
        return {pk for pk, series in ended.items() if series in successor and pk in inhibitors}

    def _count_silenced_causes(
        self, playbooks: list[ResponsePlaybook], silenced: Callable[[Anomaly], bool]
    ) -> None:
        """A cause under a silence inhibits its effects as if it had been paged.

        An operator who silences `db.*` for the database's maintenance expects the
        endpoints it slows down to stay quiet too: Alertmanager's inhibit rules take their
        source from every firing alert, silenced or not. Before, the silenced database
        paged nothing and each endpoint paged on its own (16 pages in the demo incident).
        Counted for the playbooks that would have paged the cause.
        """
        causes = {c.pk: c for cs in self.causes.values() for c in cs}
        causes.update((c.pk, c) for cs in self.declared.values() for c, _ in cs)
        for cause in causes.values():
            if cause.status == Anomaly.Status.FALSE_POSITIVE or not silenced(cause):
                continue
            self.silenced.add(cause.pk)
            self.told.update((p.pk, cause.pk) for p in playbooks if p.matches(cause))

    def _count_pages_of_effects(self, cause_ids: set[int]) -> None:
        """`via_effects` from the pages sent before this run: through a ranked cause's
        effect, or through an inhibition rule's target (`stands_for`)."""
        pages = (
            ResponseExecution.objects.filter(playbook_id__in=self.on)
            .exclude(status=INHIBITED)
            .exclude(anomaly__status=Anomaly.Status.FALSE_POSITIVE)
        )
        told = ("status", "attempts", "notified_severity", "anomaly__severity", "anomaly__ended_at")
        rows = list(
            pages.filter(
                anomaly__causes__rank=1, anomaly__causes__cause_anomaly_id__in=cause_ids
            ).values_list("playbook_id", "anomaly__causes__cause_anomaly_id", *told)
        )
        if sources := {c.pk for cs in self.declared.values() for c, _ in cs}:
            rows += pages.filter(result__incident_of__in=list(sources)).values_list(
                "playbook_id", "result__incident_of", *told
            )
        for p, c, status, attempts, notified, severity, ended in rows:
            if tells(status, attempts):
                self._paged_via_effect(p, c, notified or severity, ongoing=ended is None)

    def _paged_via_effect(self, playbook: int, cause: int, severity: str, *, ongoing: bool) -> None:
        for via in (self.via_effects, self.via_ongoing) if ongoing else (self.via_effects,):
            told = via.setdefault(playbook, {})
            told[cause] = max(told.get(cause, -1), SEVERITY_ORDER.get(severity, -1))

    def tell(self, p: ResponsePlaybook, a: Anomaly, *, paged: bool) -> None:
        """The playbook's receiver has been told of `a`: paged for it, or not (`paged`)
        because it was told of its cause. A page also tells of the incident of `a`'s
        likeliest causes; a page held back does not, so that an effect held back at a
        warning that turns critical is paged, and holds its critical siblings back."""
        self.told.add((p.pk, a.pk))
        if paged and (group := p.group_of(a.series)) is not None and p.pk in self.on:
            members = self.leaders.setdefault(p.pk, {}).setdefault(_key(group), [])
            if all(m.pk != a.pk for m in members):
                members.append(a)
        if paged:
            for c in self.causes.get(a.pk, []):
                self._paged_via_effect(p.pk, c.pk, a.severity, ongoing=True)
            for c, _ in self.declared.get(a.pk, []):
                self._paged_via_effect(p.pk, c.pk, a.severity, ongoing=True)

    def stands_for(self, p: ResponsePlaybook, a: Anomaly) -> Anomaly | None:
        """The inhibition rule's source whose incident a page for `a` tells the receiver
        of, when its playbook does not cover that source and has not been told of it: the
        page records it (`result.incident_of`), so later runs hold the source's other
        targets back behind it and its incident updates count them, as a team's page
        through the first effect of a ranked cause does. Only for a playbook with
        `inhibit_effects`: one that only groups by labels holds nothing back behind a
        source."""
        if p.pk not in self.inhibits:
            return None
        for c, _ in self.declared.get(a.pk, []):
            if (
                c.ended_at is None
                and not p.matches(c)
                and (p.pk, c.pk) not in self.told
                and c.pk not in self.via_ongoing.get(p.pk, {})
            ):
                return c
        return None

    def why(self, p: ResponsePlaybook, cause: Anomaly, a: Anomaly | None = None) -> str:
        """What the held-back execution (of `a`) says of its cause."""
        if a is not None and (p.pk, a.pk) in self.grouped:
            return GROUPED
        if cause.status == Anomaly.Status.FALSE_POSITIVE:
            return (
                "was dismissed as a false positive, and this playbook paged the rest of its "
                "incident through another of its effects, which goes on; sent if this "
                "anomaly outlives that one"
            )
        if (p.pk, cause.pk) not in self.told:
            told = "this playbook paged its incident through another of its effects"
        elif cause.pk in self.silenced:
            told = "a silence mutes it"
        else:
            told = PAGED
        return f"goes on and {told}; {_outlives(p)}"

    def judging_order(self, a: Anomaly) -> tuple:
        """Causes before their effects: by onset. Two anomalies that are each other's
        likeliest cause (a tie: one signal seen twice, such as active users and request
        rate) count from the earlier onset of the two, the more severe first: it is the
        one paged, and the other is held back behind it. Judged by onset alone, the
        first paged at info and the second, a warning, paged again as more severe than
        its cause."""
        mutual = [
            c
            for c in self.causes.get(a.pk, [])
            if any(x.pk == a.pk for x in self.causes.get(c.pk, []))
        ]
        onset = min([a.started_at, *(c.started_at for c in mutual)])
        return (onset, -SEVERITY_ORDER[a.severity], a.started_at, a.pk)

    def cause(self, p: ResponsePlaybook, a: Anomaly) -> Anomaly | None:
        """The ongoing cause the receiver was told of that inhibits this page, or None.

        Told of it means paged for it, or, for a receiver whose playbook does not match
        the cause (a team's playbook on `http.*` while the database's goes to its DBAs,
        or one on critical anomalies whose cause is a warning), paged for another of its
        effects at least as severe: that receiver hears of the incident once, through
        its first effect, instead of once per endpoint. (A playbook that matches the cause
        and has not been told of it, because its page failed, was cancelled or not yet
        judged, pages the effects as before.) The caller `tell`s the pair when
        it queues or inhibits the page, so the anomalies judged after it see it.

        Failing all that, a playbook that groups by labels (`group_by`) holds the page back
        behind the first anomaly it paged in the same group that goes on, whatever their
        causes and severities, as Alertmanager sends a group's later alerts in its next
        notification (`grouped`)."""
        self.grouped.pop((p.pk, a.pk), None)
        if p.pk not in self.on:
            return None
        if p.pk in self.inhibits and (cause := self._cause(p, a)) is not None:
            return cause
        if (group := p.group_of(a.series)) is None:
            return None
        for c in self.leaders.get(p.pk, {}).get(_key(group), []):
            if c.pk != a.pk and c.ended_at is None:
                self.grouped[(p.pk, a.pk)] = group
                return c
        return None

    def _cause(self, p: ResponsePlaybook, a: Anomaly) -> Anomaly | None:
        """`cause` for a playbook with `inhibit_effects`: a ranked or declared cause."""
        rank = SEVERITY_ORDER[a.severity]
        # Held back while a page for another of the cause's effects goes on: once that one
        # has recovered (and its receiver was told so), the next still abnormal is paged,
        # so the receiver always has a firing alert for an incident that goes on.
        ongoing = self.via_ongoing.get(p.pk, {})
        for c in self.causes.get(a.pk, []):
            if c.status == Anomaly.Status.FALSE_POSITIVE:
                # Its effects are released, as one group.
                if rank <= ongoing.get(c.pk, -1):
                    return c
            elif c.ended_at is None and (
                ((p.pk, c.pk) in self.told and rank <= SEVERITY_ORDER[c.severity])
                or (rank <= ongoing.get(c.pk, -1) and not p.matches(c))
            ):
                return c
        # A declared source holds back the pages of a playbook that paged it (or whose page
        # a silence mutes), and, for a team that does not cover it, those after the first
        # (`stands_for`), as a ranked cause does.
        for c, _ in self.declared.get(a.pk, []):
            if c.ended_at is None and (
                ((p.pk, c.pk) in self.told and rank <= SEVERITY_ORDER[c.severity])
                or (rank <= ongoing.get(c.pk, -1) and not p.matches(c))
            ):
                return c
        return None

    def in_tail(self, p: ResponsePlaybook, a: Anomaly) -> bool:
        """An effect no longer inhibited is still part of its ended cause's incident: calm
        again and waiting out its quiet period, or last abnormal less than the playbook's
        `effect_grace_seconds` after that cause was. A cause called a false positive has
        no tail: the effect is its own problem at once."""
        if p.pk not in self.on:
            return False
        if a.recovered_at is not None:
            return True
        if p.pk not in self.inhibits:
            return False  # held back in its group only: still abnormal, it carries it on
        via = self.via_effects.get(p.pk, {})
        grace = timedelta(seconds=p.effect_grace_seconds)
        return any(
            c.ended_at is not None
            and c.status != Anomaly.Status.FALSE_POSITIVE
            and ((p.pk, c.pk) in self.told or (c.pk in via and not p.matches(c)))
            and a.last_seen_at < c.last_seen_at + grace
            for c in self.causes.get(a.pk, [])
        ) or any(
            c.ended_at is not None
            and ((p.pk, c.pk) in self.told or (c.pk in via and not p.matches(c)))
            and a.last_seen_at < c.last_seen_at + grace
            for c, _ in self.declared.get(a.pk, [])
        )


def incident_updates_due(
    playbooks: list[ResponsePlaybook], told_now: set[int], now: datetime
) -> dict[int, dict]:
    """Tell the receiver of a cause's page when its incident has grown.

    Inhibition pages a database outage once, but that page goes out before the endpoints
    it takes down have opened their anomalies: without an update the on-call would learn
    the incident's reach only from the admin. As Alertmanager re-sends a group when alerts
    join it, a page that has held effects back gets an update (the same alert, its
    description naming the anomalies put down to it, `selectors.effects_of`) when more of
    them go on than the receiver was last told of, once the playbook's
    `update_interval_seconds` (Alertmanager's `group_interval`) has passed since its last
    notice. So does the page of a playbook that matches none of them (the DBAs' playbook
    on `db.*`, while the endpoints the database took down are the API team's): it is
    paged for none of them, so their count is news to it as well. A playbook that
    matches an effect and held none back (the effect was more severe than its cause, or
    inhibition is off) pages each on its own, and gets no update. A count that falls
    (effects recover) is recorded, so a second wave is news again; to a webhook whose
    group carried an effect as firing, that effect's end is news too, sent in the group
    as resolved on the same interval (Alertmanager's `send_resolved`). Notices queued in this
    run (`told_now`: reminders and escalations) carry the same description, so they count
    as told.

    Records what each receiver is told (marked when queued, as an escalation is) and
    returns the notices to queue after commit: execution -> the task's keyword arguments.
    """
    by_pk = {p.pk: p for p in playbooks}
    holding: set[tuple[int, int]] = set()
    # (playbook, page's anomaly) -> the highest severity held back in its `group_by` group.
    group_top: dict[tuple[int, int], int] = {}
    for p, by, severity, group in ResponseExecution.objects.filter(
        playbook_id__in=list(by_pk), status=INHIBITED, anomaly__ended_at__isnull=True
    ).values_list("playbook_id", "result__inhibited_by", "anomaly__severity", "result__group"):
        holding.add((p, by))
        if group is not None:
            group_top[(p, by)] = max(group_top.get((p, by), -1), SEVERITY_ORDER[severity])
    held_behind = {a for _, a in holding if isinstance(a, int)}
    pages = list(
        ResponseExecution.objects.filter(
            Q(anomaly_id__in=held_behind)
            | Q(notified_effects__gt=0)
            # A team's page for the first effect of a cause it did not page.
            | Q(anomaly__causes__rank=1, anomaly__causes__cause_anomaly_id__in=held_behind)
            # ... or for the first target of an inhibition rule's source it does not cover.
            | Q(result__incident_of__in=list(held_behind))
            # A cause with an ongoing effect, which its playbook may not match.
            | Q(anomaly__explained__rank=1, anomaly__explained__anomaly__ended_at__isnull=True)
            # A webhook's group with firing effects, which may have ended since.
            | Q(result__has_key=GROUP_FIRING),
            playbook_id__in=list(by_pk),
            status=ResponseExecution.Status.SUCCEEDED,
            anomaly__ended_at__isnull=True,
        )
        .exclude(anomaly__status=Anomaly.Status.FALSE_POSITIVE)
        .select_related("anomaly")
        .distinct()
    )
    if not pages:
        return {}
    # Each page names the incident of its likeliest cause, or its own (`incident_size`).
    causes = causes_of([e.anomaly for e in pages])
    # A team's page through an inhibition rule's target names the rule's source.
    through = {
        e.pk: e.result["incident_of"]
        for e in pages
        if not causes[e.anomaly_id] and isinstance((e.result or {}).get("incident_of"), int)
    }
    sources = Anomaly.objects.in_bulk(set(through.values())) if through else {}
    roots = {
        e.pk: sources.get(through.get(e.pk)) or (causes[e.anomaly_id] or [e.anomaly])[0]
        for e in pages
    }
    effects = effects_of(list({r.pk: r for r in roots.values()}.values()))
    # What inhibition rules held back behind the roots, which the ranking does not count;
    # a page through a rule's target counts itself, as an effect's page is in its cause's.
    # So do the members of a `group_by` group, held back behind the page's own anomaly
    # even where its root is its cause.
    by_rule = held_by_rules(
        {r.pk for r in roots.values()} | {e.anomaly_id for e in pages},
        set(by_pk),
        kinds=BY_RULE_OR_GROUP,
    )
    sizes = {
        e.pk: len(
            set(effects[roots[e.pk].pk])
            | by_rule.get((e.playbook_id, roots[e.pk].pk), set())
            | by_rule.get((e.playbook_id, e.anomaly_id), set())
            | ({e.anomaly_id} if roots[e.pk].pk == through.get(e.pk) else set())
        )
        for e in pages
    }
    paged = {(e.playbook_id, e.anomaly_id) for e in pages}
    # Effects a webhook's group sent as firing that have ended: the update resolves them.
    resolved = sent_and_ended(pages)
    # Whether a playbook matches any of an incident's effects, asked of the incidents that
    # grew and whose page held nothing back (one query, and only then).
    loose = [
        e
        for e in pages
        if sizes[e.pk] > e.notified_effects and not _holds(e, roots[e.pk].pk, holding, paged)
    ]
    effect_rows = Anomaly.objects.filter(
        pk__in={x for e in loose for x in effects[roots[e.pk].pk]}
    ).select_related("series")
    by_effect = {x.pk: x for x in effect_rows} if loose else {}
    recount: dict[int, list[int]] = {}  # effects now -> executions to record it on
    calls: dict[int, dict] = {}
    worse: dict[str, list[int]] = {}  # severity -> group pages that now hold it back
    for e in pages:
        root = roots[e.pk].pk
        count, last = sizes[e.pk], e.notified_at or e.finished_at
        p = by_pk[e.playbook_id]
        # A group member more severe than the group's receiver was told (one that turned
        # critical behind a warning's page) is news, as the page's own escalation is.
        top = group_top.get((e.playbook_id, e.anomaly_id), -1)
        escalated = top > SEVERITY_ORDER.get(e.notified_severity or e.anomaly.severity, -1)
        news = e.pk in resolved or escalated
        if count == e.notified_effects and not news:
            continue
        if e.pk in told_now or (count < e.notified_effects and not news):
            recount.setdefault(count, []).append(e.pk)
            if escalated and e.pk in told_now:  # the notice queued now names it
                worse.setdefault(_severity_named(top), []).append(e.pk)
        elif (
            not news
            and not _holds(e, root, holding, paged)
            and any(p.matches(by_effect[x]) for x in effects[root] if x in by_effect)
        ):
            continue  # nothing was held back: the receiver is paged for each anomaly
        elif last is not None and (
            # A member's escalation is sent now, as the page's own would be: a receiver
            # paged for a warning must not wait an update interval to hear of a critical.
            escalated or now - last >= timedelta(seconds=p.update_interval_seconds)
        ):
            recount.setdefault(count, []).append(e.pk)
            calls[e.pk] = {
                "told": e.notified_effects,
                "queued": now.isoformat(),
                "last": last.isoformat(),
            }
            if escalated:
                worse.setdefault(_severity_named(top), []).append(e.pk)
    for count, pks in recount.items():
        ResponseExecution.objects.filter(pk__in=pks).update(notified_effects=count)
    for severity, pks in worse.items():
        # The highest severity the receiver has been told of in this group.
        ResponseExecution.objects.filter(pk__in=pks).update(notified_severity=severity)
    if calls:
        # News, as an escalation is: the repeat interval counts from it.
        ResponseExecution.objects.filter(pk__in=list(calls)).update(notified_at=now)
    return calls


def _severity_named(rank: int) -> str:
    return next(name for name, r in SEVERITY_ORDER.items() if r == rank)


def _holds(
    page: ResponseExecution, root: int, holding: set[tuple[int, int]], paged: set[tuple[int, int]]
) -> bool:
    """The page's playbook holds back effects behind its anomaly, or, for a team's page
    through an effect, behind the cause it did not page."""
    return (page.playbook_id, page.anomaly_id) in holding or (
        root != page.anomaly_id
        and (page.playbook_id, root) in holding
        and (page.playbook_id, root) not in paged
    )


def _outlives(p: ResponsePlaybook) -> str:
    """When a held-back page goes out on its own, in the playbook's grace: the admin shows
    it, so an operator who set an hour reads an hour."""
    grace = p.effect_grace_seconds
    if grace == 0:
        return OUTLIVES
    if grace % 3600 == 0:
        span = f"{grace // 3600} h"
    elif grace % 60 == 0:
        span = f"{grace // 60} min"
    else:
        span = f"{grace} s"
    return f"sent if this anomaly is still abnormal {span} after it recovers"


def _key(group: dict[str, str] | None) -> tuple[str, ...]:
    return tuple((group or {}).values())

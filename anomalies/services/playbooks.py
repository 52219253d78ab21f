"""Response playbooks: which anomalies they match, and carrying out their actions.

An anomaly gets one execution per matching playbook; later matches of the same ongoing
anomaly only count `repeats`. An anomaly under an active silence gets none until the
silence ends; if it is still ongoing then, the next scoring run queues its responses, and
if it ended under the silence, none are ever sent. Executions run in the `anomalies.execute_response` task
(retried with backoff), and webhook receivers that were told an alert fired are told
when it resolves (`anomalies.notify_resolved`). A playbook with a repeat interval sends
the page again while the anomaly goes on unacknowledged (`anomalies.notify_reminder`).
Which pages are held back as the effects of a paged cause, and when its receiver hears
that the incident grew (`anomalies.notify_incident`), is inhibition.py.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from kombu.exceptions import KombuError

from ..models import SEVERITY_ORDER, Anomaly, InhibitionRule, ResponseExecution, ResponsePlaybook
from ..responses import (
    ResponseActionError,
    ResponseConfigError,
    perform_action,
    post_notification,
    send_test,
)
from ..selectors import (
    GROUP_FIRING,
    incident_size,
    silenced_by,
    silences_active,
    silences_overlapping,
    usable_inhibition_rules,
)
from ..validation import ALERT_ACTIONS, NOTIFY_ACTIONS, RESPONSE_MAX_AGE
from .inhibition import (
    CANCELLED,
    INHIBITED,
    NOT_QUEUED,
    Inhibition,
    Sent,
    incident_updates_due,
    inhibited_execution,
)

logger = logging.getLogger(__name__)


def _usable_playbooks() -> list[ResponsePlaybook]:
    usable = []
    for p in ResponsePlaybook.objects.filter(enabled=True):
        if errors := p.problems():
            logger.warning("response playbook %r skipped: %s", p.name, errors)
        else:
            usable.append(p)
    return usable


def _usable_inhibition_rules(playbooks: list[ResponsePlaybook]) -> list[InhibitionRule]:
    """The usable inhibition rules, read only when a playbook inhibits."""
    if not any(p.inhibit_effects and p.action in NOTIFY_ACTIONS for p in playbooks):
        return []
    return usable_inhibition_rules()


class Queued(NamedTuple):
    """What one call did: executions created, and anomalies held back by a silence."""

    queued: int
    silenced: int


def queue_responses(anomaly_ids: set[int], *, now: datetime) -> Queued:
    """One execution per (playbook, anomaly); later matches only bump `repeats`.

    Four queries whatever the number of anomalies (two more when inhibition rules apply):
    during a fleet-wide incident every series' anomaly matches on every run.
    """
    # Outside its active time a playbook does nothing: no page, reminder, escalation or
    # update (each is due again at its first run inside it); resolutions are sent anyway.
    playbooks = [p for p in _usable_playbooks() if p.active_at(now)]
    if not playbooks:
        return Queued(0, 0)
    silences = silences_overlapping(since=now - RESPONSE_MAX_AGE, until=now)
    candidates = (
        Anomaly.objects.filter(pk__in=anomaly_ids, last_seen_at__gte=now - RESPONSE_MAX_AGE)
        .exclude(status=Anomaly.Status.FALSE_POSITIVE)
        .select_related("series")
    )
    anomalies, silenced = [], 0
    for a in candidates:
        if silenced_by(a, silences, now):
            silenced += 1
        else:
            anomalies.append(a)

    def muted(a: Anomaly) -> bool:
        return bool(silenced_by(a, silences, now))

    existing: dict[tuple[int, int], Sent] = {}
    for pk, playbook_id, anomaly_id, *done in ResponseExecution.objects.filter(
        anomaly__in=anomalies
    ).values_list(
        "pk",
        "playbook_id",
        "anomaly_id",
        "status",
        "attempts",
        "notified_severity",
        "notified_at",
        "finished_at",
        "result__inhibited_by",
        "result__reason",
    ):
        existing[(playbook_id, anomaly_id)] = Sent(pk, *done)
    new, repeated, unsent, rehomed = [], [], [], []
    reminders: dict[int, datetime | None] = {}  # execution -> when the receiver was last told
    escalated: dict[str, dict[int, str]] = {}
    inhibition = Inhibition(
        anomalies,
        playbooks,
        existing,
        silenced=muted,
        rules=_usable_inhibition_rules(playbooks),
        now=now,
    )
    # Causes before their effects, so that an incident opening in one run pages once.
    for a in sorted(anomalies, key=inhibition.judging_order):
        for p in playbooks:
            if not p.matches(a):
                continue
            cause = inhibition.cause(p, a)
            if (p.pk, a.pk) not in existing:
                if cause is None and p.waits_for_group(a, now):
                    continue  # the group's first page: judged again by the next run
                source = inhibition.stands_for(p, a) if cause is None else None
                new.append(
                    ResponseExecution(
                        playbook=p,
                        anomaly=a,
                        result={"incident_of": source.pk} if source is not None else {},
                    )
                    if cause is None
                    else _held_back(inhibition, p, a, cause)
                )
                inhibition.tell(p, a, paged=cause is None)
                continue
            sent = existing[(p.pk, a.pk)]
            repeated.append(sent.pk)
            if sent.status == INHIBITED:
                # Its cause ended, or is no longer its likeliest cause: paged if it is still
                # abnormal on its own, not as the incident's tail.
                if cause is None and not inhibition.in_tail(p, a):
                    unsent.append(sent.pk)
                    inhibition.tell(p, a, paged=True)
                elif cause is not None and (
                    cause.pk != sent.inhibited_by or inhibition.why(p, cause, a) != sent.reason
                ):
                    # Held back now behind another cause (a resolved one's successor, its
                    # group's next page), or for another reason (its cause was dismissed,
                    # or its silence ended).
                    rehomed.append(_held_back(inhibition, p, a, cause, pk=sent.pk))
                    inhibition.tell(p, a, paged=False)
            elif (sent.status == NOT_QUEUED and sent.attempts == 0) or sent.status == CANCELLED:
                unsent.append(sent.pk)
                inhibition.tell(p, a, paged=True)
            elif sent.status != ResponseExecution.Status.SUCCEEDED:
                continue
            elif _tell_again(p, a, sent.told):
                escalated.setdefault(a.severity, {})[sent.pk] = sent.told
            elif _reminder_due(p, a, sent, now):
                reminders[sent.pk] = sent.notified_at or sent.finished_at
    if repeated:
        ResponseExecution.objects.filter(pk__in=repeated).update(repeats=F("repeats") + 1)
    if rehomed:
        ResponseExecution.objects.bulk_update(rehomed, ["result", "error"])
    created = ResponseExecution.objects.bulk_create(new)
    queued = [e.pk for e in created if e.status != INHIBITED]
    if queued or unsent:
        from ..tasks import execute_response

        transaction.on_commit(lambda: enqueue_executions(execute_response, [*queued, *unsent]))
    if escalated:
        _queue_escalation_notices(escalated, now)
    if reminders:
        _queue_reminders(reminders, now)
    updating = [
        p for p in playbooks if p.pk in inhibition.on and p.update_interval_seconds is not None
    ]
    if updating:
        told_now = set(reminders).union(*(told for told in escalated.values()))
        if updates := incident_updates_due(updating, told_now, now):
            from ..tasks import notify_incident

            transaction.on_commit(
                lambda: _enqueue_notices(notify_incident, updates, "incident update")
            )
    return Queued(len(queued), silenced)


def _held_back(
    inhibition: Inhibition,
    p: ResponsePlaybook,
    a: Anomaly,
    cause: Anomaly,
    *,
    pk: int | None = None,
) -> ResponseExecution:
    """The page of `a` held back behind `cause`, saying why: its group's page, a rule's
    source, or its likeliest cause."""
    group = inhibition.group_of(p, a)
    return inhibited_execution(
        p,
        a,
        cause,
        pk=pk,
        why=inhibition.why(p, cause, a),
        rule=None if group is not None else inhibition.rule_of(a, cause),
        group=group,
    )


def _reminder_due(p: ResponsePlaybook, a: Anomaly, sent: Sent, now: datetime) -> bool:
    """The receiver has heard nothing of this ongoing, unacknowledged anomaly for a while.

    As Alertmanager's `repeat_interval`: a page at 3 a.m. that nobody took is sent again
    rather than left at the bottom of a channel while the incident goes on. Acknowledging
    stops the reminders, as it stops a PagerDuty escalation: someone is on it.
    """
    last = sent.notified_at or sent.finished_at
    return (
        p.repeat_interval_seconds is not None
        and p.action in NOTIFY_ACTIONS
        and a.ended_at is None
        and a.status == Anomaly.Status.OPEN
        and last is not None
        and now - last >= timedelta(seconds=p.repeat_interval_seconds)
    )


def _queue_reminders(last_told: dict[int, datetime | None], now: datetime) -> None:
    """Queue a reminder per execution, marked as sent when queued (as an escalation is),
    so the runs while it is on its way do not queue another. Each carries when the
    receiver was told before, put back if the reminder is held back at send time."""
    from ..tasks import notify_reminder

    ResponseExecution.objects.filter(pk__in=list(last_told)).update(notified_at=now)
    calls = {
        pk: {"queued": now.isoformat(), "last": last.isoformat() if last else None}
        for pk, last in last_told.items()
    }
    transaction.on_commit(lambda: _enqueue_notices(notify_reminder, calls, "reminder"))


def _tell_again(p: ResponsePlaybook, a: Anomaly, told: str) -> bool:
    """A webhook, chat or PagerDuty receiver was told a lower severity of this ongoing
    anomaly.

    `told` is empty on executions sent before it was recorded: nothing is re-sent for them.
    """
    return (
        p.action in ALERT_ACTIONS
        and a.ended_at is None
        and told in SEVERITY_ORDER
        and SEVERITY_ORDER[a.severity] > SEVERITY_ORDER[told]
    )


def _queue_escalation_notices(escalated: dict[str, dict[int, str]], now: datetime) -> None:
    """Queue an updated "firing" for receivers told a lower severity, once per escalation.

    Marked as told when queued, so the runs while the notice is on its way (or retrying)
    do not queue it again; a notice that finally fails keeps its error on the execution.
    """
    from ..tasks import notify_escalated

    for severity, told in escalated.items():
        # An escalation is news: the repeat interval counts from it, not from the page.
        ResponseExecution.objects.filter(pk__in=told).update(
            notified_severity=severity, notified_at=now
        )
    # What each receiver was told before travels with its notice: one cancelled at send
    # time (a silence began meanwhile) puts it back, so the escalation goes out once it
    # applies again.
    calls = {pk: {"told": before} for told in escalated.values() for pk, before in told.items()}
    transaction.on_commit(lambda: _enqueue_notices(notify_escalated, calls, "escalation"))


def enqueue_executions(task, execution_ids: list[int]) -> int:
    """Queue each execution on its own; returns how many the broker refused.

    Runs after the scoring run has committed. Queued in one comprehension, the first
    refusal (a broker restart) skipped every execution after it and left them all pending
    for good, each later match only counting a repeat: the page was never sent.
    """
    accepted, refused = _delay_each(task, execution_ids)
    for pk, exc in refused:
        ResponseExecution.objects.filter(pk=pk, attempts=0).update(
            status=NOT_QUEUED,
            error=f"could not be queued ({exc}); queued again on the anomaly's next match",
        )
    # Refused or cancelled before and queued now: pending again, so the next match does not
    # queue it twice.
    ResponseExecution.objects.filter(
        Q(status=NOT_QUEUED, attempts=0) | Q(status__in=(CANCELLED, INHIBITED)),
        pk__in=accepted,
    ).update(status=ResponseExecution.Status.PENDING, error="")
    return len(refused)


def _delay_each(
    task, execution_ids: list[int] | dict[int, dict]
) -> tuple[list[int], list[tuple[int, Exception]]]:
    """(ids queued, (id, error) refused): one refusal does not stop the others.

    `execution_ids` may map each id to extra keyword arguments for its task.
    """
    accepted, refused = [], []
    extra = execution_ids if isinstance(execution_ids, dict) else {}
    for pk in execution_ids:
        try:
            task.delay(pk, **extra.get(pk, {}))
        except (OSError, KombuError) as exc:
            logger.warning("%s for execution %s could not be queued: %s", task.name, pk, exc)
            refused.append((pk, exc))
        else:
            accepted.append(pk)
    return accepted, refused


def queue_resolved_notices(anomaly_ids: set[int]) -> int:
    """Tell webhook, chat and PagerDuty receivers that alerts they were sent have ended.

    Alertmanager receivers (PagerDuty, Opsgenie) keep an incident open until they get the
    same alert with status "resolved"; without it every page would have to be closed by
    hand, and a Slack channel would never learn that the alert it saw is over. As in
    Alertmanager's defaults, e-mails and tasks get no resolved notice.
    """
    pending = list(
        ResponseExecution.objects.filter(
            anomaly_id__in=anomaly_ids,
            anomaly__ended_at__isnull=False,
            playbook__action__in=ALERT_ACTIONS,
            status=ResponseExecution.Status.SUCCEEDED,
            resolved_notified_at__isnull=True,
        ).values_list("pk", flat=True)
    )
    if pending:
        from ..tasks import notify_resolved

        transaction.on_commit(lambda: _enqueue_notices(notify_resolved, pending, "resolved"))
    return len(pending)


def _enqueue_notices(task, execution_ids: list[int] | dict[int, dict], what: str) -> None:
    for pk, exc in _delay_each(task, execution_ids)[1]:
        ResponseExecution.objects.filter(pk=pk).update(
            error=f"{what} notice could not be queued ({exc})"
        )


def playbook_send_test(*, playbook_id: int, by: str = "") -> dict:
    """Send the playbook's receiver a test notification now, and say how it went.

    Synchronous, as the operator waits on the answer, and not recorded as an execution
    (there is no anomaly). A receiver that fails answers `ok: false` with the reason the
    page would have failed with, not an error: the request was fine.
    """
    playbook = ResponsePlaybook.objects.get(pk=playbook_id)
    started = time.monotonic()
    try:
        result = {"ok": True, **send_test(playbook, by=by)}
    except ResponseActionError as exc:
        result = {"ok": False, "error": str(exc)}
    logger.info("test notification of playbook %s: %s", playbook.pk, result)
    return {**result, "duration_ms": round(1000 * (time.monotonic() - started))}


def response_execute(*, execution_id: int) -> dict:
    """Run one playbook action and record status, duration and result.

    Raises ResponseActionError after recording the failed attempt, so the task can retry
    with backoff; the final attempt is recorded as FAILED. An execution that no longer
    applies (playbook disabled or edited, false positive, series silenced) is CANCELLED
    without sending.
    """
    execution = ResponseExecution.objects.select_related(
        "playbook", "anomaly", "anomaly__series"
    ).get(pk=execution_id)
    if execution.status == ResponseExecution.Status.SUCCEEDED:
        return {"skipped": 1}
    if reason := _no_longer_applies(execution.playbook, execution.anomaly, timezone.now()):
        return _cancel(execution_id, reason)
    started = time.perf_counter()
    error, result, final = "", {}, False
    # What is sent says "resolved" only if the anomaly had ended when it was built.
    sent_resolved = execution.anomaly.ended_at is not None
    sent_severity = execution.anomaly.severity
    # The anomalies the message names as put down to this one (`_incident_clause`): an
    # incident that opened in one run is in the page already, and its update would say
    # the same again five minutes later.
    sent_effects = (
        incident_size(execution.anomaly, execution.playbook_id)
        if execution.playbook.action in NOTIFY_ACTIONS
        else 0
    )
    try:
        result = perform_action(execution.anomaly, execution.playbook)
    except ResponseConfigError as exc:
        error, final = str(exc), True
    except ResponseActionError as exc:
        error = str(exc)
    except Exception as exc:
        # The worker's soft time limit, or a bug in building the message: unrecorded, the
        # task failed and the execution stayed pending for good (never queued again).
        logger.exception("response execution %s: the attempt failed unexpectedly", execution_id)
        error = f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        execution = ResponseExecution.objects.select_for_update().get(pk=execution_id)
        execution.attempts += 1
        execution.duration_ms = (time.perf_counter() - started) * 1000.0
        execution.finished_at = timezone.now()
        # What the page stands for (`Inhibition.stands_for`) outlives its attempts.
        kept = {k: execution.result[k] for k in ("incident_of",) if k in execution.result}
        execution.result, execution.error = {**kept, **result}, error
        if not error:
            execution.status = ResponseExecution.Status.SUCCEEDED
            execution.notified_severity = sent_severity
            execution.notified_effects = sent_effects
            execution.notified_at = execution.finished_at
            if sent_resolved:
                # What was sent already said "resolved" (the anomaly ended while retrying).
                execution.resolved_notified_at = execution.finished_at
        elif final or execution.attempts >= execution.playbook.max_attempts:
            execution.status = ResponseExecution.Status.FAILED
        else:
            execution.status = ResponseExecution.Status.RETRYING
        execution.save()
        if not error and not sent_resolved:
            # The anomaly may have ended while "firing" was on its way: the run that closed
            # it skipped this execution (not yet succeeded), so its notice is queued here.
            queue_resolved_notices({execution.anomaly_id})
    if execution.status == ResponseExecution.Status.RETRYING:
        raise ResponseActionError(error)
    return {"succeeded": int(not error), "failed": int(bool(error))}


def _no_longer_applies(p: ResponsePlaybook, a: Anomaly, now: datetime) -> str:
    """Why a queued page should not go out any more ("" when it should).

    An execution waits in the queue, or up to 40 minutes between retries. An operator who
    disables a noisy playbook, narrows it, calls the anomaly a false positive or silences
    its series meanwhile has said not to send it. A silenced page is held back as the
    scoring run holds one back (`silenced_by`), and like any cancelled one it is queued
    again by the first run that matches its anomaly after the silence ends.
    """
    if not p.enabled:
        return "not sent: the playbook was disabled"
    if a.status == Anomaly.Status.FALSE_POSITIVE:
        return "not sent: the anomaly was marked a false positive"
    if not p.matches(a):
        return "not sent: the playbook no longer matches this anomaly (edited)"
    if muted := silenced_by(a, silences_active(a.ended_at or now), now):
        names = ", ".join(f"silence {pk}" for pk in muted)
        return f"not sent: held back by {names}; sent if the anomaly still goes on after it"
    return ""


def _cancel(execution_id: int, reason: str) -> dict:
    ResponseExecution.objects.filter(pk=execution_id).exclude(
        status=ResponseExecution.Status.SUCCEEDED
    ).update(
        status=ResponseExecution.Status.CANCELLED,
        error=reason,
        duration_ms=0.0,
        finished_at=timezone.now(),
    )
    return {"cancelled": 1}


def response_notify_escalated(*, execution_id: int, told: str | None = None) -> dict:
    """Send a webhook or Slack receiver the anomaly's new severity while it is firing.

    The alert keeps its fingerprint and group key, so the receiver updates the alert it
    has (Alertmanager re-sends a changed group the same way); its resolved notice then
    carries the severity it was last told. Nothing is sent once the anomaly has ended:
    the resolved notice says it all.

    It is a page like the first, so it is checked at send time like the first
    (`_no_longer_applies`): a silence that began, a playbook disabled or narrowed, or a
    false positive while it waited in the queue holds it back (before, it went out through
    the silence). `told`, the severity the receiver had been told before the notice was
    queued, is put back then, so the next scoring run that matches the anomaly once it
    applies again (the silence over) sends the escalation.
    """
    execution = _notice_execution(execution_id)
    if execution.anomaly.ended_at is not None:
        return {"skipped": 1}
    if reason := _no_longer_applies(execution.playbook, execution.anomaly, timezone.now()):
        if told is None:  # queued before `told` was carried: one step below what was queued
            told = _severity_below(execution.notified_severity)
        # Unless a later escalation was queued meanwhile: that notice answers for both.
        ResponseExecution.objects.filter(
            pk=execution.pk, notified_severity=execution.notified_severity
        ).update(notified_severity=told, error=f"escalation notice {reason}")
        return {"cancelled": 1}
    return _send_notice(
        execution, "escalation notice", notified_severity=execution.anomaly.severity
    )


def response_notify_reminder(
    *, execution_id: int, queued: str | None = None, last: str | None = None
) -> dict:
    """Send the page again: the anomaly goes on and nobody has acknowledged it.

    The same message as the page (Alertmanager re-sends a group unchanged): for a webhook
    the same fingerprint and group key, so PagerDuty or Opsgenie update the incident they
    have rather than open a second one. Checked at send time like the page: an anomaly
    acknowledged, ended or called a false positive, a silence, or a playbook disabled or
    narrowed meanwhile, and nothing goes out. The receiver was not told, so when it was
    last told (`last`, carried from the queueing run) is put back, unless something else
    told it since: the first run after a silence ends sends the reminder that fell in it,
    rather than one a whole interval later.
    """
    execution = _notice_execution(execution_id)
    anomaly = execution.anomaly
    if anomaly.ended_at is not None or anomaly.status != Anomaly.Status.OPEN:
        return {"skipped": 1}
    if reason := _no_longer_applies(execution.playbook, anomaly, timezone.now()):
        held = ResponseExecution.objects.filter(pk=execution.pk)
        held.update(error=f"reminder {reason}")
        if queued and last:
            held.filter(notified_at=parse_datetime(queued)).update(notified_at=parse_datetime(last))
        return {"cancelled": 1}
    return _send_notice(
        execution,
        "reminder",
        send=partial(perform_action, kind="reminder"),
        reminders=F("reminders") + 1,
    )


def response_notify_incident(
    *, execution_id: int, told: int = 0, queued: str | None = None, last: str | None = None
) -> dict:
    """Tell the receiver of a cause's page that more of its incident was held back.

    The cause's alert again, its description naming the anomalies put down to it
    (`responses._incident_clause`); a webhook receiver updates the incident it has (same
    fingerprint and group key), an e-mail says "Update:". Checked at send time like the
    page: a silence, a disabled or narrowed playbook or a false positive holds it back,
    and then what the receiver had been told (`told` effects, and when: `last`) is put
    back, so the first run after, say, the silence ends sends it. Nothing is sent once
    the cause has ended: its resolved notice closes the incident.
    """
    execution = _notice_execution(execution_id)
    if execution.anomaly.ended_at is not None:
        return {"skipped": 1}
    if reason := _no_longer_applies(execution.playbook, execution.anomaly, timezone.now()):
        held = ResponseExecution.objects.filter(pk=execution.pk)
        held.update(error=f"incident update {reason}")
        if queued and last:
            held.filter(notified_at=parse_datetime(queued)).update(
                notified_at=parse_datetime(last), notified_effects=told
            )
        return {"cancelled": 1}
    return _send_notice(execution, "incident update", send=partial(perform_action, kind="update"))


def _severity_below(severity: str) -> str:
    below = [s for s, rank in SEVERITY_ORDER.items() if rank < SEVERITY_ORDER.get(severity, 0)]
    return max(below, key=SEVERITY_ORDER.__getitem__, default="")


def response_notify_resolved(*, execution_id: int) -> dict:
    """Send a webhook or Slack receiver the resolved state of an alert it was sent.

    Raises ResponseActionError for the task to retry; the error is kept on the execution.
    A receiver that refuses it (a 4xx: a revoked key) is not asked again.

    Unlike the first page and an escalation, it is not held back by a silence, a disabled
    or narrowed playbook or a false positive: it closes an alert the receiver already has
    open (a false positive is exactly what it should close), and a silence means "stop
    paging me", not "leave my PagerDuty incident open for good". Alertmanager mutes the
    resolved notification of an alert silenced after it fired, and its users then close
    those incidents by hand; an alert that began and ended under the silence was never
    sent, so it gets no notice either way (`queue_resolved_notices` asks for a succeeded
    page).
    """
    execution = _notice_execution(execution_id)
    if execution.resolved_notified_at is not None or execution.anomaly.ended_at is None:
        return {"skipped": 1}
    return _send_notice(execution, "resolved notice", resolved_notified_at=timezone.now())


def _record_group_sent(execution: ResponseExecution, sent: dict, **fields) -> None:
    """Record the held-back effects a webhook notice sent as firing in the group
    (`GROUP_FIRING`, none if it sent none): those it sent resolved are not sent again.
    Under the row's lock, so as not to undo what another notice wrote to the result."""
    if execution.playbook.action != ResponsePlaybook.Action.WEBHOOK:
        ResponseExecution.objects.filter(pk=execution.pk).update(**fields)
        return
    with transaction.atomic():
        row = ResponseExecution.objects.select_for_update().only("result").get(pk=execution.pk)
        result = {k: v for k, v in row.result.items() if k != GROUP_FIRING}
        if GROUP_FIRING in sent:
            result[GROUP_FIRING] = sent[GROUP_FIRING]
        ResponseExecution.objects.filter(pk=execution.pk).update(result=result, **fields)


def _notice_execution(execution_id: int) -> ResponseExecution:
    return ResponseExecution.objects.select_related("playbook", "anomaly", "anomaly__series").get(
        pk=execution_id
    )


def _send_notice(
    execution: ResponseExecution, what: str, send=post_notification, **on_success
) -> dict:
    """Post the anomaly's current state to the execution's receiver and record the outcome.

    A transient failure is raised for the task to retry, its reason kept on the execution;
    a refusal (ResponseConfigError: a 4xx, a redirect) is recorded and not asked again.
    """
    try:
        sent = send(execution.anomaly, execution.playbook)
    except ResponseConfigError as exc:
        # Not asked again: nor is the group's resolution of what it held (which would
        # otherwise be news to every later run).
        _record_group_sent(execution, {}, error=f"{what}: {exc}")
        return {"failed": 1}
    except ResponseActionError as exc:
        ResponseExecution.objects.filter(pk=execution.pk).update(error=f"{what}: {exc}")
        raise
    _record_group_sent(execution, sent or {}, error="", **on_success)
    return {"notified": 1}

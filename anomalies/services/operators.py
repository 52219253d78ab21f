"""Operator actions on an anomaly: acknowledge, resolve, mark as a false positive.

Acknowledging or resolving confirms the anomaly as an incident (`confirmed_at`), so that
its recurrence alerts (`engine.feedback.is_recurrence`); a false positive takes that back.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..models import Anomaly, DismissedPattern
from .playbooks import queue_resolved_notices


class AnomalyStateError(Exception):
    """An operator action that the anomaly's status does not allow."""

    field = "status"


def anomaly_acknowledge(*, anomaly_id: int, by: str = "", note: str = "") -> Anomaly:
    """Open -> acknowledged; acknowledging again changes nothing."""
    with transaction.atomic():
        a = Anomaly.objects.select_for_update().get(pk=anomaly_id)
        if a.status not in (Anomaly.Status.OPEN, Anomaly.Status.ACKNOWLEDGED):
            raise AnomalyStateError(
                f"anomaly {a.pk} is {a.get_status_display().lower()}: "
                "only an open anomaly can be acknowledged"
            )
        if a.status == Anomaly.Status.OPEN:
            a.status = Anomaly.Status.ACKNOWLEDGED
            a.acknowledged_by = by
        a.confirmed_at = a.confirmed_at or timezone.now()
        if note:
            a.note = note
        a.save(update_fields=["status", "acknowledged_by", "confirmed_at", "note", "updated_at"])
        return a


def anomaly_resolve(*, anomaly_id: int, by: str = "", note: str = "") -> Anomaly:
    """Close the anomaly as dealt with.

    Resolving a false positive says it was real after all: its dismissal is deleted, so
    the pattern alerts again (otherwise it would stay silenced under a "resolved" label).
    """
    with transaction.atomic():
        a = Anomaly.objects.select_for_update().get(pk=anomaly_id)
        if a.status == Anomaly.Status.FALSE_POSITIVE:
            DismissedPattern.objects.filter(anomaly=a).delete()
        if a.status != Anomaly.Status.RESOLVED:
            a.status = Anomaly.Status.RESOLVED
            a.resolved_by = by
        a.ended_at = a.ended_at or timezone.now()
        a.confirmed_at = a.confirmed_at or timezone.now()
        if note:
            a.note = note
        a.save(
            update_fields=[
                "status",
                "resolved_by",
                "ended_at",
                "confirmed_at",
                "note",
                "updated_at",
            ]
        )
        queue_resolved_notices({a.pk})
        return a


def anomaly_mark_false_positive(*, anomaly_id: int, by: str = "", note: str = "") -> Anomaly:
    """Dismiss the anomaly and remember its fingerprint so the pattern stops alerting."""
    with transaction.atomic():
        a = Anomaly.objects.select_for_update().get(pk=anomaly_id)
        a.status = Anomaly.Status.FALSE_POSITIVE
        a.ended_at = a.ended_at or a.last_seen_at
        a.confirmed_at = None  # an acknowledgement taken back: it must not recur as an incident
        if note:
            a.note = note
        a.save(update_fields=["status", "ended_at", "confirmed_at", "note", "updated_at"])
        queue_resolved_notices({a.pk})
        DismissedPattern.objects.update_or_create(
            anomaly=a,
            defaults={
                "series_id": a.series_id,
                "direction": a.direction,
                "peak_z": a.peak_z,
                "methods": list(a.methods),
                "created_by": by,
            },
        )
        return a


# Anomalies one bulk action may change: an incident of a few hundred series, not a purge.
MAX_BULK = 500

BULK_ACTIONS = {
    "acknowledge": anomaly_acknowledge,
    "resolve": anomaly_resolve,
    "false_positive": anomaly_mark_false_positive,
}


class BulkActionError(AnomalyStateError):
    """A bulk action refused as a whole, naming the anomalies that stopped it."""

    field = "ids"


def anomalies_act(*, action: str, ids: list[int], by: str = "", note: str = "") -> list[int]:
    """One operator action on many anomalies (an incident's, from `anomaly/detect`), all
    or none: a chat-ops "ack the incident" must not leave half of it open. Every row is
    locked first, so a concurrent action cannot slip between the check and the change.
    Returns the ids, in the order given."""
    act = BULK_ACTIONS[action]
    ids = list(dict.fromkeys(ids))
    with transaction.atomic():
        statuses = dict(
            Anomaly.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")  # one lock order: two bulk actions cannot deadlock
            .values_list("pk", "status")
        )
        if missing := [pk for pk in ids if pk not in statuses]:
            raise BulkActionError(f"no anomaly with id {_listed(missing)}; nothing was changed")
        if action == "acknowledge":
            closed = [
                pk
                for pk in ids
                if statuses[pk] not in (Anomaly.Status.OPEN, Anomaly.Status.ACKNOWLEDGED)
            ]
            if closed:
                raise BulkActionError(
                    f"anomal{'y' if len(closed) == 1 else 'ies'} {_listed(closed)} "
                    "no longer open: only open anomalies can be acknowledged; nothing was "
                    "changed"
                )
        for pk in ids:
            act(anomaly_id=pk, by=by, note=note)
    return ids


def _listed(ids: list[int], shown: int = 20) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(map(str, ids[:shown])) + more

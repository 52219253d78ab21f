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

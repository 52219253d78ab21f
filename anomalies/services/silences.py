"""Ending a silence early: the operator's "we are done, alert again"."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ..models import Silence


class SilenceStateError(Exception):
    """A silence that has already ended cannot be expired again."""

    field = "ends_at"


def silence_expire(*, silence_id: int, now: datetime | None = None) -> Silence:
    """End the silence now; one not yet begun ends before it starts.

    Anomalies it muted that are still ongoing get their responses on the next scoring
    run (at most a minute later on the default schedule), not at once: the job is the
    only writer of executions.
    """
    now = now or timezone.now()
    with transaction.atomic():
        silence = Silence.objects.select_for_update().get(pk=silence_id)
        if silence.ends_at <= now:
            raise SilenceStateError(f"silence {silence.pk} already ended at {silence.ends_at}")
        silence.starts_at = min(silence.starts_at, now)
        silence.ends_at = now
        silence.save(update_fields=["starts_at", "ends_at"])
        return silence

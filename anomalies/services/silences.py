"""Silences an operator makes or ends from an anomaly: "stop paging me about this for two
hours while I fix it", and "we are done, alert again"."""

from __future__ import annotations

import glob
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..models import Anomaly, Silence

# A silence made from an anomaly lasts at most a week: longer is not "while I fix it",
# and is what marking a false positive or disabling a playbook is for.
MAX_SILENCE_MINUTES = 7 * 24 * 60


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


def silence_anomaly_series(
    *, anomaly_id: int, minutes: int, comment: str, by: str = "", now: datetime | None = None
) -> Silence:
    """Silence the anomaly's series (its exact name and labels) from now for `minutes`.

    The name is escaped, so a series called `jobs[nightly]` silences only itself, not
    `jobsn`, and the labels must match exactly, so `cpu{host=a}` does not also mute
    `cpu{host=a,core=1}`. The anomaly itself keeps its status: muting is not acknowledging.
    """
    if not 1 <= minutes <= MAX_SILENCE_MINUTES:
        raise ValueError(f"minutes must be from 1 to {MAX_SILENCE_MINUTES}")
    now = now or timezone.now()
    series = Anomaly.objects.select_related("series").get(pk=anomaly_id).series
    return Silence.objects.create(
        series_pattern=glob.escape(series.name),
        labels=dict(series.labels or {}),
        exact_labels=True,
        starts_at=now,
        ends_at=now + timedelta(minutes=minutes),
        comment=comment,
        created_by=by,
    )

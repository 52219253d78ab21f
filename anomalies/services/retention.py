"""Anomaly history past its retention: closed anomalies, with their executions and
root-cause candidates, deleted in short batches.

A busy fleet opens thousands of anomalies a month, each with up to ten ranked causes, an
execution per playbook and its abnormal points; kept for ever they slow every list and
report that reads them. Sentry and Datadog keep events for a set period the same way.
What the system learned is kept: a false positive's dismissal is what keeps its pattern
quiet, so false positives are never deleted, and an anomaly that goes on is never
deleted whatever its age.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import Anomaly

# The longest look back of what reads anomaly history: inhibition rule suggestions read up
# to 90 days (the on-call report 30, recurrence 28). Less would empty them silently.
MIN_RETENTION_DAYS = 90
DEFAULT_RETENTION_DAYS = 400  # a year and a month: last year's incident at this season


class RetentionError(ValueError):
    """A retention the history's readers cannot live with."""


def anomaly_retention_days() -> int:
    return int(getattr(settings, "PHASE3_ANOMALY_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))


def anomalies_enforce_retention(
    *, now: datetime | None = None, batch_size: int = 1_000, max_batches: int = 100
) -> dict[str, int]:
    """Delete anomalies that ended more than the retention ago, except false positives,
    `batch_size` at a time, one short transaction each (a big first run spreads over
    several scheduled runs, at most `max_batches` each). Returns what was deleted."""
    days = anomaly_retention_days()
    if days < MIN_RETENTION_DAYS:
        raise RetentionError(
            f"PHASE3_ANOMALY_RETENTION_DAYS is {days}: at least {MIN_RETENTION_DAYS}, since "
            "inhibition rule suggestions read 90 days of incidents"
        )
    cutoff = (now or timezone.now()) - timedelta(days=days)
    expired = Anomaly.objects.filter(ended_at__lt=cutoff).exclude(
        status=Anomaly.Status.FALSE_POSITIVE
    )
    counts = {"days": days, "anomalies": 0, "executions": 0, "causes": 0, "batches": 0}
    while counts["batches"] < max_batches:
        with transaction.atomic():
            ids = list(expired.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            _, deleted = Anomaly.objects.filter(pk__in=ids).delete()
        counts["anomalies"] += deleted.get("anomalies.Anomaly", 0)
        counts["executions"] += deleted.get("anomalies.ResponseExecution", 0)
        counts["causes"] += deleted.get("anomalies.RootCauseCandidate", 0)
        counts["batches"] += 1
        if len(ids) < batch_size:
            break
    return counts

"""The overview's anomaly section and the on-call reports: how much paging, how fast
answered, which series are noisiest."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from django.db.models import Count, Q
from django.utils import timezone

from telemetry.models import Series

from ..models import (
    Anomaly,
    ResponseExecution,
    Silence,
)
from ..validation import NOTIFY_ACTIONS
from .recent import OPEN_STATUSES, anomaly_state_q
from .silences import silence_in_force


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
    silenced, or another of its effects was paged) or carried in a `group_by` group's
    notifications, which is what that spared the on-call. Seconds; None where there is nothing to measure.
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
    from ..tunings import tuning_of, usable_tunings  # tunings reads series through here

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

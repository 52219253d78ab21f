"""Celery entry points: each calls one service. Locking, JobRun records and transient-error
retries come from the project's task base (phase3.tasks.JobTask via the Celery app)."""

from __future__ import annotations

from celery import shared_task

from phase3.tasks import TRANSIENT_ERRORS

from . import services
from .responses import ResponseActionError
from .validation import MAX_ATTEMPTS


@shared_task(name="anomalies.score_recent", soft_time_limit=50, time_limit=58)
def score_recent() -> dict:
    return services.anomalies_score_recent()


@shared_task(name="anomalies.retrain", soft_time_limit=600, time_limit=660)
def retrain() -> dict:
    return services.learned_model_retrain()


@shared_task(name="anomalies.enforce_retention", soft_time_limit=600, time_limit=660)
def enforce_retention(batch_size: int = 1_000, max_batches: int = 100) -> dict:
    return services.anomalies_enforce_retention(batch_size=batch_size, max_batches=max_batches)


# Sending to the outside world: retried with backoff on ResponseActionError. The service
# stops raising at the playbook's own max_attempts (at most MAX_ATTEMPTS), recording the
# execution as failed; max_retries only bounds the task itself.
_OUTBOUND = {
    # Plus the base task's transient errors: a database blip while recording an attempt
    # must not leave the execution pending for good.
    "autoretry_for": (ResponseActionError, *TRANSIENT_ERRORS),
    "retry_backoff": 10,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": MAX_ATTEMPTS,
    "soft_time_limit": 60,
    "time_limit": 90,
}


@shared_task(name="anomalies.execute_response", **_OUTBOUND)
def execute_response(execution_id: int) -> dict:
    return services.response_execute(execution_id=execution_id)


@shared_task(name="anomalies.notify_resolved", **_OUTBOUND)
def notify_resolved(execution_id: int) -> dict:
    return services.response_notify_resolved(execution_id=execution_id)


@shared_task(name="anomalies.notify_reminder", **_OUTBOUND)
def notify_reminder(execution_id: int, queued: str | None = None, last: str | None = None) -> dict:
    return services.response_notify_reminder(execution_id=execution_id, queued=queued, last=last)


@shared_task(name="anomalies.notify_escalated", **_OUTBOUND)
def notify_escalated(execution_id: int, told: str | None = None) -> dict:
    return services.response_notify_escalated(execution_id=execution_id, told=told)


@shared_task(name="anomalies.notify_incident", **_OUTBOUND)
def notify_incident(
    execution_id: int, told: int = 0, queued: str | None = None, last: str | None = None
) -> dict:
    return services.response_notify_incident(
        execution_id=execution_id, told=told, queued=queued, last=last
    )

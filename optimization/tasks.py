"""Celery entry points; each calls one service and returns counts (kept in JobRun.counts)."""

from __future__ import annotations

from celery import group, shared_task
from django.db import transaction

from . import services

BASELINE_CHUNK = 25


@shared_task(name="optimization.plan_baselines", soft_time_limit=120, time_limit=180)
def plan_baselines() -> dict:
    """Fan baseline recomputation out: one task per chunk of series, so workers share it."""
    ids = services.baseline_series_ids()
    chunks = [ids[i : i + BASELINE_CHUNK] for i in range(0, len(ids), BASELINE_CHUNK)]
    if chunks:
        transaction.on_commit(
            lambda: group(recompute_baselines.s(series_ids=chunk) for chunk in chunks).apply_async()
        )
    return {"series": len(ids), "chunks": len(chunks)}


@shared_task(name="optimization.recompute_baselines", soft_time_limit=600, time_limit=660)
def recompute_baselines(series_ids: list[int] | None = None) -> dict:
    return services.baselines_recompute(series_ids=series_ids)


@shared_task(name="optimization.analyze", soft_time_limit=600, time_limit=660)
def analyze() -> dict:
    report = services.analysis_run()
    return {
        "recommendations_seen": report.recommendations_seen,
        "recommendations_created": report.recommendations_created,
        "health": 1 if report.health_id else 0,
    }


@shared_task(name="optimization.verify_recommendations", soft_time_limit=900, time_limit=960)
def verify_recommendations() -> dict:
    return services.recommendations_verify()

"""Celery entry points of the forecasting system; each calls one service.

The planner fans out one task per (target, horizon), so adding workers
shortens a run: forecasts are independent and CPU-bound.
"""

from __future__ import annotations

from celery import group, shared_task
from django.db import transaction

from forecasting import services


@shared_task(name="forecasting.plan", soft_time_limit=60, time_limit=90)
def plan_forecasts(
    horizon_groups: list[str] | None = None,
    prediction_type: str | None = None,
    horizons: list[int] | None = None,
) -> dict:
    """Queue one ``forecasting.recompute_series`` per target and horizon, after commit."""
    pairs = services.forecasts_plan(
        horizon_groups=horizon_groups, prediction_type=prediction_type, horizons=horizons
    )
    if pairs:
        transaction.on_commit(
            lambda: group(
                recompute_series.s(target_id=t, horizon_days=h) for t, h in pairs
            ).apply_async()
        )
    return {"queued": len(pairs)}


@shared_task(name="forecasting.recompute_series", soft_time_limit=300, time_limit=360)
def recompute_series(target_id: int, horizon_days: int) -> dict:
    """Forecast one target over one horizon (idempotent: same history, same rows)."""
    return services.forecast_recompute(target_id=target_id, horizon_days=horizon_days)

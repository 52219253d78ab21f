"""Celery entry points of telemetry: thin calls of one service each, returning counts."""

from __future__ import annotations

from celery import shared_task

from .services import rollups_update, samples_enforce_retention


@shared_task(name="telemetry.update_rollups", soft_time_limit=540, time_limit=600)
def update_rollups(window_hours: int = 24, max_windows: int = 30) -> dict:
    """Summarise newly closed hours and recompute hours that late samples made stale."""
    return rollups_update(window_hours=window_hours, max_windows=max_windows)


@shared_task(name="telemetry.enforce_retention", soft_time_limit=1740, time_limit=1800)
def enforce_retention(batch_size: int = 20_000, max_batches: int = 500) -> dict:
    """Delete raw samples past the retention window whose hours are rolled up."""
    return samples_enforce_retention(batch_size=batch_size, max_batches=max_batches)

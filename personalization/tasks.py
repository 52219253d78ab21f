"""Celery entry points; each calls one service and returns counts (kept in JobRun.counts)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="personalization.recompute_profiles", soft_time_limit=1800, time_limit=1900)
def recompute_profiles(days: int = 28) -> dict:
    return services.profiles_recompute(days=days)


@shared_task(
    name="personalization.recompute_experiment_results", soft_time_limit=900, time_limit=960
)
def recompute_experiment_results() -> dict:
    return services.experiments_results_recompute()


@shared_task(name="personalization.recompute_experiment", soft_time_limit=600, time_limit=660)
def recompute_experiment(experiment_id: int) -> dict:
    return services.experiment_results_recompute(experiment_id=experiment_id)


@shared_task(name="personalization.advance_rollouts", soft_time_limit=240, time_limit=280)
def advance_rollouts() -> dict:
    return services.rollouts_advance()

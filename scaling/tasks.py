"""Celery entry points; each calls one service and returns counts (kept in JobRun.counts)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="scaling.evaluate", soft_time_limit=50, time_limit=58)
def evaluate(resource_ids: list[int] | None = None) -> dict:
    """Decide and act for every enabled resource (or the given ones; anomalies send this)."""
    evaluations = services.decisions_evaluate(resource_ids=resource_ids, execute=True)
    counts = {"resources": len(evaluations), "changes": 0, "executed": 0, "failed": 0,
              "skipped": 0, "emergencies": 0}  # fmt: skip
    for ev in evaluations:
        if ev.row is None or ev.row.action == "none":
            continue
        counts["changes"] += 1
        counts["emergencies"] += ev.row.emergency
        counts[{"executed": "executed", "failed": "failed"}.get(ev.row.status, "skipped")] += 1
    return counts


@shared_task(name="scaling.check_outcomes", soft_time_limit=120, time_limit=150)
def check_outcomes() -> dict:
    return services.outcomes_check()


@shared_task(name="scaling.prune_decisions", soft_time_limit=300, time_limit=330)
def prune_decisions(days: int = 14) -> dict:
    return services.decisions_prune(days=days)

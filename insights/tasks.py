"""Celery entry points of the insights system: each calls one service, then asks for
insight generation so the new results reach operators without waiting a day.

Too little data is an expected state of a young installation, not a failure: the task
records ``{"skipped": 1}`` instead of failing and being retried.
"""

from __future__ import annotations

from celery import shared_task

from insights.services.errors import InsufficientData
from insights.services.feature_impact import feature_impact_recompute
from insights.services.insights import insights_generate
from insights.services.patterns import state_patterns_refresh
from insights.services.segments import segments_recompute

GENERATE = "insights.generate_insights"


def _then_generate(counts: dict) -> dict:
    generate_insights.delay()
    return counts


@shared_task(name="insights.segment_users", soft_time_limit=900, time_limit=960)
def segment_users(days: int = 28) -> dict:
    try:
        return _then_generate(segments_recompute(days=days))
    except InsufficientData:
        return {"skipped": 1}


@shared_task(name="insights.feature_impact", soft_time_limit=900, time_limit=960)
def feature_impact(outcome: str = "retention", days: int = 28) -> dict:
    try:
        return _then_generate(feature_impact_recompute(outcome=outcome, days=days))
    except InsufficientData:
        return {"skipped": 1}


@shared_task(name="insights.state_patterns", soft_time_limit=600, time_limit=660)
def state_patterns(days: int = 28) -> dict:
    try:
        return _then_generate(state_patterns_refresh(days=days))
    except InsufficientData:
        return {"skipped": 1}


@shared_task(name=GENERATE, soft_time_limit=300, time_limit=360)
def generate_insights() -> dict:
    return insights_generate()

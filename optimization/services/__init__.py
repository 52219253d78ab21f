"""Services of the optimization app: the only code that writes its models.

Split by subject; import from here.
"""

from .analysis import AnalysisResult, analysis_compute, analysis_run
from .baselines import baseline_series_ids, baselines_recompute
from .profiles import performance_flush
from .recommendations import (
    APPLIED_AT_MAX_AGE,
    RecommendationStateError,
    recommendation_claim,
    recommendation_dismiss,
    recommendation_mark_applied,
    recommendation_rollback,
    recommendation_verify,
    recommendations_upsert,
    recommendations_verify,
)

__all__ = [
    "APPLIED_AT_MAX_AGE",
    "AnalysisResult",
    "RecommendationStateError",
    "analysis_compute",
    "analysis_run",
    "baseline_series_ids",
    "baselines_recompute",
    "performance_flush",
    "recommendation_claim",
    "recommendation_dismiss",
    "recommendation_mark_applied",
    "recommendation_rollback",
    "recommendation_verify",
    "recommendations_upsert",
    "recommendations_verify",
]

"""Realised impact of an applied recommendation: did the metric really improve?

A raw before/after comparison is fooled by the week: apply a fix on Friday evening and latency
"improves" because traffic falls. Both windows are therefore measured as residuals against the
hour-of-week baseline (value minus what is normal for that hour), and the change is the
difference of the median residuals. A one-sided Mann-Whitney U test on the residuals says
whether the improvement is more than noise; too few points give "inconclusive" rather than a
verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .baselines import HourOfWeekBaseline

SUCCEEDED = "succeeded"
FAILED = "failed"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class RealisedImpact:
    before_excess: float
    after_excess: float
    improvement_per_request: float  # positive = better, in the metric's unit
    saved_per_day: float
    p_value: float
    points_before: int
    points_after: int
    outcome: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _residuals(baseline: HourOfWeekBaseline, ts, values) -> np.ndarray:
    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    residual = values - baseline.expected(ts)
    return residual[np.isfinite(residual)]


def realised_impact(
    *,
    baseline: HourOfWeekBaseline,
    before_ts: np.ndarray,
    before_values: np.ndarray,
    after_ts: np.ndarray,
    after_values: np.ndarray,
    requests_per_day: float,
    lower_is_better: bool = True,
    alpha: float = 0.05,
    min_points: int = 12,
) -> RealisedImpact:
    """Compare the metric before and after a change, both relative to its baseline.

    ``saved_per_day`` converts the per-request improvement into the same unit as the prediction
    (e.g. ms saved per day) so the two can be set side by side and calibrated.
    """
    before = _residuals(baseline, before_ts, before_values)
    after = _residuals(baseline, after_ts, after_values)
    if before.size < min_points or after.size < min_points:
        return RealisedImpact(
            before_excess=float(np.median(before)) if before.size else float("nan"),
            after_excess=float(np.median(after)) if after.size else float("nan"),
            improvement_per_request=0.0,
            saved_per_day=0.0,
            p_value=1.0,
            points_before=int(before.size),
            points_after=int(after.size),
            outcome=INCONCLUSIVE,
        )
    sign = 1.0 if lower_is_better else -1.0
    before_med, after_med = float(np.median(before)), float(np.median(after))
    improvement = sign * (before_med - after_med)
    alternative = "less" if lower_is_better else "greater"
    p_value = float(stats.mannwhitneyu(after, before, alternative=alternative).pvalue)
    outcome = SUCCEEDED if p_value < alpha and improvement > 0 else FAILED
    return RealisedImpact(
        before_excess=before_med,
        after_excess=after_med,
        improvement_per_request=improvement,
        saved_per_day=improvement * requests_per_day,
        p_value=p_value,
        points_before=int(before.size),
        points_after=int(after.size),
        outcome=outcome,
    )

"""Turn detector findings into recommendations an operator can act on.

Every recommendation carries: the evidence it rests on, a confidence in 0..1 with a sentence
saying where it comes from, a predicted impact (request ms and database ms saved per day),
implementation complexity, risk, a rollback plan and a dedup key that stays the same while the
cause persists (so hourly analysis updates one recommendation instead of piling up copies).

Confidence follows the strength of the evidence, per kind of evidence:

* a proportion (N+1: share of requests showing the pattern): the Wilson 95 % lower bound, which
  is low for few observations and approaches the share as they accumulate;
* a test (regression, saturation): ``1 - p`` scaled by an effect-size term (|rho| for a
  correlation, the excess over baseline for a regression), because a tiny but certain effect is
  not worth acting on;
* counts without a test (slow query, hotspot): ``n / (n + 10)`` support shrinkage times how
  far the figure is beyond its threshold.

Evidence inferred from aggregates (``source="series"``) is discounted by
``SERIES_EVIDENCE_DISCOUNT``: it cannot show the repeated statement itself. Predicted impacts
that rest on a prior (how much of a hotspot's DB time caching removes) say so in the evidence;
:mod:`optimization.engine.calibration` corrects them with realised outcomes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from scipy.stats import norm

from .bottlenecks import (
    EndpointShare,
    NPlusOneFinding,
    Regression,
    ResourceLink,
    SlowQuery,
    is_routed,
)
from .sql_shape import shape_key

SERIES_EVIDENCE_DISCOUNT = 0.7
SUPPORT_PSEUDO_COUNT = 10.0
# Prior share of an endpoint's DB time that caching / query work removes; calibrated later.
HOTSPOT_PRIOR_REDUCTION = 0.3
HOTSPOT_MIN_TIME_SHARE = 0.3
HOTSPOT_MIN_DB_FRACTION = 0.5

N_PLUS_ONE = "n_plus_one"
SLOW_QUERY = "slow_query"
REGRESSION = "regression"
SATURATION = "saturation"
HOTSPOT = "hotspot"
CATEGORIES = (N_PLUS_ONE, SLOW_QUERY, REGRESSION, SATURATION, HOTSPOT)

# Categorical judgements per kind of change: (complexity, risk).
_EFFORT = {
    N_PLUS_ONE: ("low", "low"),
    SLOW_QUERY: ("medium", "medium"),
    REGRESSION: ("medium", "low"),
    SATURATION: ("medium", "medium"),
    HOTSPOT: ("high", "medium"),
}


@dataclass(frozen=True)
class RecommendationDraft:
    """A recommendation as computed, before it is stored."""

    category: str
    title: str
    endpoint: str
    resource: str
    evidence: dict
    confidence: float
    confidence_explanation: str
    predicted_ms_saved_per_day: float
    predicted_db_ms_saved_per_day: float
    complexity: str
    risk: str
    rollback_plan: str
    dedup_key: str
    metric: str = ""  # the series whose before/after verifies the change
    calibration: dict = field(default_factory=dict)


def wilson_lower_bound(successes: float, trials: float, level: float = 0.95) -> float:
    """Lower bound of the two-sided Wilson score interval (0 when there are no trials).

    Written out rather than taken from ``scipy.stats.binomtest`` because counts here may be
    fractional (aggregated over intervals); the tests check it against SciPy on integers.
    """
    if trials <= 0:
        return 0.0
    z = float(norm.ppf(0.5 + level / 2))
    p = min(max(successes / trials, 0.0), 1.0)
    denominator = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, (centre - margin) / denominator)


def support(count: float) -> float:
    """Shrink toward 0 when there are few observations: ``n / (n + 10)``."""
    return count / (count + SUPPORT_PSEUDO_COUNT) if count > 0 else 0.0


def dedup_key(category: str, endpoint: str = "", resource: str = "", shape: str = "") -> str:
    """Same cause -> same key, whatever the figures of the day."""
    raw = "|".join([category, endpoint, resource, shape_key(shape) if shape else ""])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _draft(category: str, **kwargs) -> RecommendationDraft:
    complexity, risk = _EFFORT[category]
    kwargs.setdefault("resource", "")
    kwargs.setdefault("endpoint", "")
    return RecommendationDraft(
        category=category,
        complexity=complexity,
        risk=risk,
        dedup_key=dedup_key(
            category, kwargs["endpoint"], kwargs["resource"], kwargs["evidence"].get("shape", "")
        ),
        confidence=round(min(max(kwargs.pop("confidence"), 0.0), 1.0), 4),
        **kwargs,
    )


def recommend_n_plus_one(finding: NPlusOneFinding, requests_per_day: float) -> RecommendationDraft:
    """Batch the repeated query (``select_related`` / ``prefetch_related`` / ``IN``).

    Batching N statements into one leaves about one statement's time, so the saving per affected
    request is ``pattern_ms * (1 - 1/repeats)``; it applies to the share of requests with the
    pattern.
    """
    saving = finding.mean_pattern_ms * (1 - 1 / max(finding.mean_repeats, 1.0))
    per_day = saving * finding.share * requests_per_day
    lower = wilson_lower_bound(finding.requests_with_pattern, finding.requests_total)
    discount = SERIES_EVIDENCE_DISCOUNT if finding.source == "series" else 1.0
    unit = "requests" if finding.source == "requests" else "intervals"
    explanation = (
        f"pattern in {finding.requests_with_pattern} of {finding.requests_total} {unit}; "
        f"Wilson 95% lower bound {lower:.2f}"
        + (f", x{discount} because shapes were inferred from aggregates" if discount < 1 else "")
    )
    return _draft(
        N_PLUS_ONE,
        title=f"N+1 queries on {finding.endpoint}: batch ~{finding.mean_repeats:.0f} repeats",
        endpoint=finding.endpoint,
        evidence={
            "shape": finding.shape,
            "requests_with_pattern": finding.requests_with_pattern,
            "requests_total": finding.requests_total,
            "mean_repeats": finding.mean_repeats,
            "mean_pattern_ms": finding.mean_pattern_ms,
            "source": finding.source,
            "requests_per_day": requests_per_day,
        },
        confidence=lower * discount,
        confidence_explanation=explanation,
        predicted_ms_saved_per_day=per_day,
        predicted_db_ms_saved_per_day=per_day,
        rollback_plan=(
            f"Revert the commit that added select_related/prefetch_related on {finding.endpoint}; "
            "no data migration is involved, so a redeploy of the previous build restores it."
        ),
        metric="db.time.ms",
    )


def recommend_slow_query(
    query: SlowQuery, *, threshold_ms: float, window_days: float
) -> RecommendationDraft:
    """Index or rewrite a slow statement; at most its time above the threshold is saved."""
    per_day = query.excess_ms / max(window_days, 1e-9)
    beyond = 1 - threshold_ms / query.mean_ms
    confidence = support(query.count) * beyond
    return _draft(
        SLOW_QUERY,
        title=f"Slow query on {query.endpoint}: mean {query.mean_ms:.0f} ms",
        endpoint=query.endpoint,
        evidence={
            "shape": query.shape,
            "count": query.count,
            "mean_ms": query.mean_ms,
            "max_ms": query.max_ms,
            "threshold_ms": threshold_ms,
        },
        confidence=confidence,
        confidence_explanation=(
            f"{query.count} executions (support {support(query.count):.2f}) with a mean "
            f"{beyond:.0%} beyond the {threshold_ms:g} ms threshold"
        ),
        predicted_ms_saved_per_day=per_day,
        predicted_db_ms_saved_per_day=per_day,
        rollback_plan=(
            "Drop the new index (DROP INDEX CONCURRENTLY) or revert the query rewrite; "
            "create indexes CONCURRENTLY so neither step locks the table."
        ),
        metric="db.time.ms",
    )


def recommend_regression(reg: Regression, requests_per_day: float) -> RecommendationDraft:
    """Find and undo what made an endpoint slower than its baseline."""
    excess = max(reg.recent_median - reg.expected_median, 0.0)
    per_day = excess * requests_per_day
    effect = 1 - 1 / reg.ratio
    confidence = (1 - reg.p_value) * effect * 2  # a doubling (effect 0.5) is full strength
    return _draft(
        REGRESSION,
        title=f"{reg.endpoint} regressed: {reg.series} x{reg.ratio:.2f} its baseline",
        endpoint=reg.endpoint,
        evidence={
            "series": reg.series,
            "recent_median": reg.recent_median,
            "expected_median": reg.expected_median,
            "ratio": reg.ratio,
            "p_value": reg.p_value,
            "median_z": reg.median_z,
            "points": reg.points,
            "requests_per_day": requests_per_day,
        },
        confidence=confidence,
        confidence_explanation=(
            f"Wilcoxon p={reg.p_value:.2g} on {reg.points} points; {reg.ratio:.2f}x the "
            f"baseline ({effect:.0%} of current time is excess; full strength at 2x)"
        ),
        predicted_ms_saved_per_day=per_day,
        predicted_db_ms_saved_per_day=0.0,
        rollback_plan=(
            f"Roll back the deploy or flag that coincides with the regression on {reg.endpoint}; "
            "if none does, revert the configuration change found in the change log."
        ),
        metric=reg.series,
    )


def recommend_saturation(
    link: ResourceLink, *, requests_per_day: float, target_utilization: float = 0.7
) -> RecommendationDraft:
    """Add capacity to (or relieve) a resource whose saturation drives latency.

    Bringing p95 utilisation down to ``target_utilization`` is predicted to save the latency
    cost per unit of utilisation times the reduction, for every request. When the evidence is
    saturated episodes, the saving is the latency excess while saturated over the share of
    time spent saturated: what never saturating again would give back.
    """
    reduction = max(link.utilization_p95 - target_utilization, 0.0)
    saving = max(link.latency_ms_per_unit, 0.0) * reduction * requests_per_day
    if link.saturated_points and link.saturated_p_value < link.p_value:
        share = link.saturated_points / max(link.points, 1)
        saving = max(link.saturated_excess_ms, 0.0) * share * requests_per_day
        explanation = (
            f"latency x{link.saturated_latency_ratio:.2f} during {link.saturated_points} "
            f"saturated intervals (Mann-Whitney p={link.saturated_p_value:.2g}, "
            f"Bonferroni over lags); strength {link.strength:.2f}"
        )
    else:
        explanation = (
            f"Spearman rho {link.rho:.2f} at lag {link.lag_steps} on {link.points} points, "
            f"p={link.p_value:.2g} (Bonferroni over lags)"
        )
    return _draft(
        SATURATION,
        title=f"{link.resource} saturation drives latency",
        resource=link.resource,
        evidence={
            "rho": link.rho,
            "p_value": link.p_value,
            "lag_steps": link.lag_steps,
            "points": link.points,
            "utilization_p95": link.utilization_p95,
            "latency_ms_per_unit": link.latency_ms_per_unit,
            "saturated_points": link.saturated_points,
            "saturated_latency_ratio": link.saturated_latency_ratio,
            "saturated_p_value": link.saturated_p_value,
            "saturated_excess_ms": link.saturated_excess_ms,
            "target_utilization": target_utilization,
        },
        confidence=link.strength,
        confidence_explanation=explanation,
        predicted_ms_saved_per_day=saving,
        predicted_db_ms_saved_per_day=0.0,
        rollback_plan=(
            f"Return {link.resource} capacity to its previous setting; the change is a "
            "configuration value, so it reverts without a deploy."
        ),
        metric="http.latency.p95",
    )


def recommend_hotspot(
    share: EndpointShare, *, window_days: float, total_ms: float
) -> RecommendationDraft | None:
    """Cache or restructure an endpoint that holds a large share of all time, mostly in the DB.

    Returns ``None`` unless the endpoint holds ``HOTSPOT_MIN_TIME_SHARE`` of all request time
    and at least ``HOTSPOT_MIN_DB_FRACTION`` of its own time is database time, and for
    unresolved requests (no route to cache: a scanner's 404 flood is traffic, not a hotspot).
    """
    if not is_routed(share.endpoint):
        return None
    if share.total_ms <= 0 or share.time_share < HOTSPOT_MIN_TIME_SHARE:
        return None
    db_fraction = share.db_ms / share.total_ms
    if db_fraction < HOTSPOT_MIN_DB_FRACTION:
        return None
    per_day = HOTSPOT_PRIOR_REDUCTION * share.db_ms / max(window_days, 1e-9)
    confidence = support(share.requests) * db_fraction
    return _draft(
        HOTSPOT,
        title=f"{share.endpoint} holds {share.time_share:.0%} of request time: cache its reads",
        endpoint=share.endpoint,
        evidence={
            "time_share": share.time_share,
            "db_share": share.db_share,
            "db_fraction": db_fraction,
            "requests": share.requests,
            "prior_reduction": HOTSPOT_PRIOR_REDUCTION,
            "all_endpoints_ms": total_ms,
        },
        confidence=confidence,
        confidence_explanation=(
            f"{db_fraction:.0%} of the endpoint's time is in the database over "
            f"{share.requests:.0f} requests; saving assumes the prior "
            f"{HOTSPOT_PRIOR_REDUCTION:.0%} reduction until calibrated"
        ),
        predicted_ms_saved_per_day=per_day,
        predicted_db_ms_saved_per_day=per_day,
        rollback_plan=(
            f"Disable the cache for {share.endpoint} with its feature flag (or set its TTL to 0); "
            "reads fall back to the database immediately."
        ),
        metric="db.time.ms",
    )


def rank_recommendations(drafts: Iterable[RecommendationDraft]) -> list[RecommendationDraft]:
    """Order by expected value: confidence x predicted ms saved per day; one per dedup key.

    A draft about unresolved requests (no URL route) is dropped whatever produced it: there is
    no endpoint to change, so it could only ever be dismissed.
    """
    best: dict[str, RecommendationDraft] = {}
    for draft in drafts:
        if draft.endpoint and not is_routed(draft.endpoint):
            continue
        kept = best.get(draft.dedup_key)
        if kept is None or _value(draft) > _value(kept):
            best[draft.dedup_key] = draft
    return sorted(best.values(), key=_value, reverse=True)


def _value(draft: RecommendationDraft) -> float:
    return draft.confidence * (
        draft.predicted_ms_saved_per_day + draft.predicted_db_ms_saved_per_day
    )


def with_calibration(
    draft: RecommendationDraft, *, impact_factor: float, confidence: float, detail: Mapping
) -> RecommendationDraft:
    """A copy with calibrated figures; the raw ones stay in ``calibration`` for audit."""
    return replace(
        draft,
        predicted_ms_saved_per_day=draft.predicted_ms_saved_per_day * impact_factor,
        predicted_db_ms_saved_per_day=draft.predicted_db_ms_saved_per_day * impact_factor,
        confidence=round(min(max(confidence, 0.0), 1.0), 4),
        calibration={
            "raw_ms_saved_per_day": draft.predicted_ms_saved_per_day,
            "raw_db_ms_saved_per_day": draft.predicted_db_ms_saved_per_day,
            "raw_confidence": draft.confidence,
            "impact_factor": impact_factor,
            **dict(detail),
        },
    )

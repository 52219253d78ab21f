"""Findings: what each system has learned, as candidates for insights (reads only).

A ``Finding`` carries its subject (for the dedup key), plain words, evidence, and the
impact and confidence parts of its priority, each computed from the source's own
figures. Novelty is added when the finding is stored, from what the same key said
before. This module builds findings from the insights system's own results; other
systems' findings come from ``insights.sources``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from insights.engine import priority as pr
from insights.engine.performance_patterns import WEEKDAYS
from insights.model_names import FEATURE_IMPACT_PREFIX, SEGMENT_MODEL, STATE_MODEL
from insights.models import FeatureImpact, Insight, MLModel, Segment, StatePattern


@dataclass
class Finding:
    category: str
    source: str
    subject: tuple[str, ...]
    title: str
    body: str
    impact: pr.Part
    confidence: pr.Part
    key_value: float | None
    evidence: dict = field(default_factory=dict)
    # When set, ``key_value`` is a date (epoch seconds) and only a move that much earlier
    # is material (forecast threshold crossings); else the relative change is compared.
    key_material_earlier_s: float | None = None

    @property
    def dedup_key(self) -> str:
        return pr.dedup_key(self.category, self.source, *self.subject)


def _active(name_prefix: str, kind: str) -> list[MLModel]:
    return list(
        MLModel.objects.filter(name__startswith=name_prefix, kind=kind, is_active=True)
        .defer("artefact")
        .order_by("name")
    )


def _segment_identity(seg: Segment) -> str:
    """What makes two segments' findings "the same": their line across retrainings.

    Names are built from the two strongest distinguishing features and labels are
    arbitrary per fit, so both change between nightly runs of the same group of users
    (two close effects swap order); keyed by them, a dismissed insight came back under a
    new key, and two segments both named "typical users" collapsed into one insight.
    """
    return f"segment-line-{seg.lineage or seg.pk}"


def segment_findings() -> list[Finding]:
    """Segments growing or shrinking significantly, and each segment's targeting."""
    out: list[Finding] = []
    for model in _active(SEGMENT_MODEL, MLModel.Kind.CLUSTERING):
        silhouette = model.primary_score
        segments = list(Segment.objects.filter(model=model).prefetch_related("snapshots"))
        for seg in segments:
            snaps = list(seg.snapshots.all())
            days = len(snaps)
            quality = pr.confidence_from_silhouette(silhouette)
            if seg.trend != Segment.Trend.STABLE and seg.trend_slope_per_day is not None:
                change = seg.trend_slope_per_day * max(days - 1, 1)
                first, last = snaps[0].share if snaps else seg.share, seg.share
                out.append(
                    Finding(
                        category=Insight.Category.SEGMENT,
                        source="insights",
                        subject=("trend", _segment_identity(seg)),
                        title=f"Segment “{seg.name}” is {seg.trend}",
                        body=(
                            f"The share of active users in the segment “{seg.name}” went from "
                            f"{first:.0%} to {last:.0%} over {days} days "
                            f"({seg.trend_slope_per_day:+.2%} a day). "
                            + (
                                "What works for them: " + " ".join(seg.recommendations)
                                if seg.recommendations
                                else ""
                            )
                        ).strip(),
                        impact=pr.impact_from_effect(change, scale=0.1, what="share change"),
                        confidence=pr.combine_confidence(
                            pr.confidence_from_p_value(seg.trend_p_value or 1.0), quality
                        ),
                        key_value=seg.share,
                        evidence={
                            "model": str(model),
                            "segment_id": seg.pk,
                            "slope_per_day": seg.trend_slope_per_day,
                            "p_value": seg.trend_p_value,
                            "shares": [[str(s.day), s.share] for s in snaps],
                        },
                    )
                )
            if seg.recommendations:
                top = seg.distinguishing[:2]
                what = ", ".join(
                    f"{d['feature'].replace('_', ' ')} {d['segment_mean']:.1f}/week vs "
                    f"{d['population_mean']:.1f}"
                    for d in top
                )
                out.append(
                    Finding(
                        category=Insight.Category.SEGMENT,
                        source="insights",
                        subject=("target", _segment_identity(seg)),
                        title=f"Target “{seg.name}” ({seg.share:.0%} of users)",
                        body=(
                            f"{seg.size} users stand apart by {what}. "
                            + " ".join(seg.recommendations)
                        ),
                        impact=pr.impact_from_effect(seg.share, scale=0.25, what="user share"),
                        confidence=pr.combine_confidence(
                            pr.confidence_from_count(seg.size, half_at=30), quality
                        ),
                        key_value=seg.share,
                        evidence={
                            "model": str(model),
                            "segment_id": seg.pk,
                            "distinguishing": seg.distinguishing,
                        },
                    )
                )
    return out


def feature_impact_findings() -> list[Finding]:
    """Promote / review suggestions of the active feature impact models."""
    out: list[Finding] = []
    for model in _active(FEATURE_IMPACT_PREFIX, MLModel.Kind.FEATURE_IMPACT):
        auc = model.primary_score if model.primary_score is not None else math.nan
        rows = list(FeatureImpact.objects.filter(model=model))
        total_cost = sum(r.cost for r in rows if r.cost is not None)
        driver = _strongest_driver(rows)
        if driver is not None:
            out.append(
                Finding(
                    category=Insight.Category.FEATURE_IMPACT,
                    source="insights",
                    subject=("driver", driver.outcome, driver.feature),
                    title=f"Early use of “{driver.feature}” goes with better {driver.outcome}",
                    body=(
                        f"Users who used {driver.feature} in their first days reached "
                        f"{driver.outcome} at {driver.odds_ratio:.1f}x the odds of those who did "
                        f"not (95% CI {driver.ci_low:.1f}-{driver.ci_high:.1f}; "
                        f"{driver.success_rate_used:.0%} vs "
                        f"{(driver.success_rate_unused or 0):.0%}); {driver.adoption:.0%} use it. "
                        "It is also the feature the outcome model relies on most."
                    ),
                    impact=pr.impact_from_odds_ratio(driver.odds_ratio),
                    confidence=pr.combine_confidence(
                        pr.confidence_from_p_value(driver.q_value), pr.confidence_from_auc(auc)
                    ),
                    key_value=driver.odds_ratio,
                    evidence={
                        "model": str(model),
                        "odds_ratio": driver.odds_ratio,
                        "ci": [driver.ci_low, driver.ci_high],
                        "q_value": driver.q_value,
                        "importance": driver.importance,
                        "importance_std": driver.importance_std,
                        "model_auc": model.primary_score,
                    },
                )
            )
        for row in rows:
            if not row.suggestion:
                continue
            verb = "Promote" if row.suggestion == FeatureImpact.Suggestion.PROMOTE else "Review"
            out.append(
                Finding(
                    category=Insight.Category.FEATURE_IMPACT,
                    source="insights",
                    subject=(row.suggestion, row.outcome, row.feature),
                    title=f"{verb} “{row.feature}” ({row.outcome})",
                    body=row.reason[:1].upper() + row.reason[1:] + ".",
                    impact=pr.impact_from_odds_ratio(row.odds_ratio)
                    if row.suggestion == FeatureImpact.Suggestion.PROMOTE
                    else pr.impact_from_effect(
                        (row.cost or 0.0) / total_cost if total_cost else 0.0,
                        scale=0.25,
                        what="share of feature server time",
                    ),
                    confidence=pr.combine_confidence(
                        pr.confidence_from_p_value(row.q_value), pr.confidence_from_auc(auc)
                    )
                    if row.suggestion == FeatureImpact.Suggestion.PROMOTE
                    else pr.confidence_from_count(row.support, half_at=50),
                    key_value=row.odds_ratio,
                    evidence={
                        "model": str(model),
                        "odds_ratio": row.odds_ratio,
                        "ci": [row.ci_low, row.ci_high],
                        "q_value": row.q_value,
                        "adoption": row.adoption,
                        "importance": row.importance,
                        "cost": row.cost,
                        "model_auc": model.primary_score,
                    },
                )
            )
    return out


def _strongest_driver(rows: list[FeatureImpact]) -> FeatureImpact | None:
    """The feature both views agree on: significant odds ratio > 1 and the largest
    permutation importance that is clearly above zero (two standard deviations)."""
    agreed = [
        r
        for r in rows
        if r.odds_ratio > 1
        and r.q_value < 0.05
        and not (r.ci_low <= 1.0 <= r.ci_high)
        and r.importance - 2 * r.importance_std > 0
    ]
    return max(agreed, key=lambda r: r.importance, default=None)


def pattern_findings() -> list[Finding]:
    """Recurring unusual system states of the active state model."""
    out: list[Finding] = []
    for model in _active(STATE_MODEL, MLModel.Kind.ANOMALY):
        auc = model.primary_score
        for p in StatePattern.objects.filter(model=model):
            strongest = max((abs(v) for v in p.signature.values()), default=0.0)
            parts = [pr.confidence_from_count(p.episode_count, half_at=2)]
            if auc is not None:
                parts.append(pr.confidence_from_auc(auc))
            when = ""
            if p.weekly_hour is not None:
                day, hour = divmod(p.weekly_hour, 24)
                when = f" It recurs weekly on {WEEKDAYS[day]} around {hour:02d}:00 UTC."
            out.append(
                Finding(
                    category=Insight.Category.ANOMALY_PATTERN,
                    source="insights",
                    subject=(
                        "pattern",
                        *sorted(k for k, v in p.signature.items() if abs(v) >= 2.0),
                        str(p.weekly_hour),
                    ),
                    title=f"Recurring unusual system state ({p.episode_count} episodes)",
                    body=(
                        f"{p.episode_count} times between {p.first_seen:%Y-%m-%d %H:%M} and "
                        f"{p.last_seen:%Y-%m-%d %H:%M} UTC the system was in a state no single "
                        f"metric shows: {p.description}.{when}"
                    ),
                    impact=pr.impact_from_effect(
                        strongest, scale=5.0, what="strongest deviation σ"
                    ),
                    confidence=pr.combine_confidence(*parts),
                    key_value=float(p.episode_count),
                    evidence={
                        "model": str(model),
                        "pattern_id": p.pk,
                        "signature": p.signature,
                        "episodes": p.episodes,
                        "weekly_hour": p.weekly_hour,
                    },
                )
            )
    return out


OWN_SOURCES = {
    "segments": segment_findings,
    "feature_impact": feature_impact_findings,
    "patterns": pattern_findings,
}

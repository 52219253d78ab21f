"""Reads of the insights system for its API, admin and the overview (no writes)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from .models import FeatureImpact, Insight, MLModel, Segment, StatePattern

# An insight not regenerated for this long is history, not news: kept, but not "top".
TOP_FRESH_FOR = timedelta(days=7)


def mlmodel_queryset() -> QuerySet[MLModel]:
    return MLModel.objects.defer("artefact")


def models_summary() -> list[dict]:
    """Each model name: its active version's held-out score and how many versions exist."""
    versions = dict(
        MLModel.objects.values_list("name")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("name", "n")
    )
    latest = dict(
        MLModel.objects.values_list("name")
        .annotate(t=Max("trained_at"))
        .order_by()
        .values_list("name", "t")
    )
    rows = []
    for m in mlmodel_queryset().filter(is_active=True).order_by("name"):
        rows.append(
            {
                "name": m.name,
                "kind": m.kind,
                "active_version": m.version,
                "versions": versions.get(m.name, 0),
                "trained_at": m.trained_at,
                "last_trained_at": latest.get(m.name),
                "training_rows": m.training_rows,
                "holdout_rows": m.holdout_rows,
                "primary_metric": m.primary_metric,
                "score": m.primary_score,
                "metrics": m.metrics,
                "activation_rule": m.activation_rule,
                "activation_reason": m.activation_reason,
            }
        )
    return rows


# Result rows join their model for its version and state; the join must leave out the
# artefact bytes (a state forest is ~0.6 MB), which were otherwise read once per row.
NO_ARTEFACT = "model__artefact"


def segment_queryset() -> QuerySet[Segment]:
    return Segment.objects.select_related("model").defer(NO_ARTEFACT).prefetch_related("snapshots")


def segments_current() -> QuerySet[Segment]:
    """Segments of the active clustering model, largest first."""
    return (
        segment_queryset()
        .filter(model__is_active=True, model__kind=MLModel.Kind.CLUSTERING)
        .order_by("-size")
    )


def insight_queryset() -> QuerySet[Insight]:
    return Insight.objects.all()


def insights_top(*, limit: int = 10) -> QuerySet[Insight]:
    """Open (new or acknowledged) insights seen recently, highest priority first."""
    return Insight.objects.filter(
        status__in=[Insight.Status.NEW, Insight.Status.ACKNOWLEDGED],
        last_seen_at__gte=timezone.now() - TOP_FRESH_FOR,
    ).order_by("-priority")[:limit]


def feature_impact_current(*, outcome: str | None = None) -> QuerySet[FeatureImpact]:
    qs = (
        FeatureImpact.objects.filter(model__is_active=True)
        .select_related("model")
        .defer(NO_ARTEFACT)
    )
    return qs.filter(outcome=outcome) if outcome else qs


def patterns_current() -> QuerySet[StatePattern]:
    return (
        StatePattern.objects.filter(model__is_active=True)
        .select_related("model")
        .defer(NO_ARTEFACT)
    )


def insights_by_status() -> dict[str, int]:
    return dict(Insight.objects.values_list("status").annotate(n=Count("id")).order_by())


def overview_section() -> dict:
    """Active models with their measured held-out scores, segments and insight counts."""
    by_status = insights_by_status()
    top = insights_top(limit=3)
    return {
        "models": [
            {
                "name": m["name"],
                "version": m["active_version"],
                "metric": m["primary_metric"],
                "score": m["score"],
            }
            for m in models_summary()
        ],
        "segments": segments_current().count(),
        "patterns": patterns_current().count(),
        "insights_by_status": by_status,
        "top_insights": [
            {"title": i.title, "priority": round(i.priority, 3), "category": i.category}
            for i in top
        ],
    }

"""Charts for the insights admin pages, drawn with the shared ``telemetry.charts`` helper."""

from __future__ import annotations

from datetime import UTC, datetime, time

from telemetry.charts import bar_chart, timeseries_chart

from .models import FeatureImpact, MLModel, Segment


def segment_sizes_chart(model: MLModel) -> str | None:
    """Share of active users in each segment of one clustering model, day by day."""
    lines = []
    for seg in Segment.objects.filter(model=model).prefetch_related("snapshots"):
        snaps = list(seg.snapshots.all())
        if snaps:
            lines.append(
                {
                    "name": seg.name,
                    "x": [datetime.combine(s.day, time(), tzinfo=UTC) for s in snaps],
                    "y": [s.share for s in snaps],
                }
            )
    if not lines:
        return None
    return timeseries_chart(f"Segment sizes — {model}", lines=lines, y_title="share of users")


def feature_impact_charts(model: MLModel) -> list[str]:
    """Odds ratio and permutation importance of every feature, for one impact model."""
    rows = list(FeatureImpact.objects.filter(model=model).order_by("-odds_ratio"))
    if not rows:
        return []
    by_importance = sorted(rows, key=lambda r: -r.importance)
    return [
        bar_chart(
            f"Odds ratio of the outcome when the feature is used — {model}",
            labels=[r.feature for r in rows],
            values=[r.odds_ratio for r in rows],
        ),
        bar_chart(
            f"Permutation importance (drop of held-out AUC) — {model}",
            labels=[r.feature for r in by_importance],
            values=[r.importance for r in by_importance],
        ),
    ]


def model_scores_chart(name: str) -> str | None:
    """Held-out primary score of every version of one model, in training order."""
    versions = list(MLModel.objects.filter(name=name).defer("artefact").order_by("trained_at"))
    scored = [v for v in versions if v.primary_score is not None]
    if not scored:
        return None
    active = [v for v in scored if v.is_active]
    return timeseries_chart(
        f"{name}: held-out {scored[0].primary_metric} by version",
        lines=[
            {
                "name": scored[0].primary_metric,
                "x": [v.trained_at for v in scored],
                "y": [v.primary_score for v in scored],
            }
        ],
        marks=[
            {
                "name": "active",
                "x": [v.trained_at for v in active],
                "y": [v.primary_score for v in active],
            }
        ],
    )

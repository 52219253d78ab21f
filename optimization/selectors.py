"""Reads of the optimization app for the API, the admin, other apps and the overview."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from .models import AnalysisReport, Baseline, HealthSnapshot, Recommendation

# A stored report older than this is not "current": the API computes a fresh one instead.
REPORT_FRESH_FOR = timedelta(hours=2)


def report_latest(*, fresh_for: timedelta = REPORT_FRESH_FOR) -> AnalysisReport | None:
    """The most recent stored analysis if it is recent enough to stand for "now"."""
    report = AnalysisReport.objects.select_related("health").order_by("-at").first()
    if report and timezone.now() - report.computed_at <= fresh_for:
        return report
    return None


# An active recommendation whose cause has not been seen for this long drops out of the top
# list (it stays listed under its state): its evidence no longer describes the product.
SEEN_WITHIN = timedelta(hours=48)


def recommendations_open(*, limit: int = 10) -> list[Recommendation]:
    """Open recommendations still backed by recent evidence, best expected value first."""
    current = Q(state=Recommendation.State.CLAIMED) | Q(
        state=Recommendation.State.ACTIVE, last_seen_at__gte=timezone.now() - SEEN_WITHIN
    )
    rows = list(Recommendation.objects.filter(current).select_related("metric_series"))
    rows.sort(key=lambda r: r.expected_value, reverse=True)
    return rows[:limit]


def recommendation_queryset() -> QuerySet[Recommendation]:
    return Recommendation.objects.select_related("metric_series")


def baseline_queryset() -> QuerySet[Baseline]:
    return Baseline.objects.select_related("series")


def health_history(*, days: int = 30) -> QuerySet[HealthSnapshot]:
    return HealthSnapshot.objects.filter(at__gte=timezone.now() - timedelta(days=days)).order_by(
        "at"
    )


def overview_section() -> dict:
    """Health now and a day ago, recommendations by state, verified success rate and savings."""
    latest = HealthSnapshot.objects.order_by("-at").first()
    day_before = (
        HealthSnapshot.objects.filter(at__lte=latest.at - timedelta(hours=24))
        .order_by("-at")
        .first()
        if latest
        else None
    )
    by_state = dict(Recommendation.objects.values_list("state").annotate(n=Count("id")).order_by())
    # verified, or rolled back (a failure even before the verifier ran); a rolled-back
    # change's realised saving is cleared: it saves nothing any more
    verified = Recommendation.objects.filter(Recommendation.with_outcome())
    outcome = verified.aggregate(
        predicted=Sum("predicted_ms_saved_per_day"), realised=Sum("realised_ms_saved_per_day")
    )
    n_verified = verified.count()
    n_succeeded = verified.filter(state=Recommendation.State.SUCCEEDED).count()
    top = recommendations_open(limit=3)
    return {
        "health_score": round(latest.score, 2) if latest else None,
        "health_at": latest.at if latest else None,
        "health_change_24h": (
            round(latest.score - day_before.score, 2) if latest and day_before else None
        ),
        "health_points_lost": (
            {k: v.get("points_lost") for k, v in latest.breakdown.items()} if latest else {}
        ),
        "recommendations_by_state": by_state,
        "verified": n_verified,
        "success_rate": (n_succeeded / n_verified) if n_verified else None,
        "predicted_ms_saved_per_day_verified": outcome["predicted"],
        "realised_ms_saved_per_day_verified": outcome["realised"],
        "top_recommendations": [
            {
                "id": r.pk,
                "title": r.title,
                "category": r.category,
                "confidence": r.confidence,
                "predicted_ms_saved_per_day": r.predicted_ms_saved_per_day,
            }
            for r in top
        ],
        "baselines": Baseline.objects.count(),
    }

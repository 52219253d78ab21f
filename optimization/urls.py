"""Routes of the optimization app, mounted under /admin/api/phase3/ by phase3.urls."""

from django.urls import re_path

from telemetry.routers import OptionalSlashRouter

from .api import AnalyzeView, BaselineViewSet, HealthSnapshotViewSet, RecommendationViewSet

router = OptionalSlashRouter()
router.register(
    "optimization/recommendations", RecommendationViewSet, basename="opt-recommendation"
)
router.register("optimization/baselines", BaselineViewSet, basename="opt-baseline")
router.register("optimization/health", HealthSnapshotViewSet, basename="opt-health")

urlpatterns = [
    re_path(r"^optimization/analyze/?$", AnalyzeView.as_view(), name="optimization-analyze"),
    *router.urls,
]

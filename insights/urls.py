"""Routes of the insights system, mounted under /admin/api/phase3/ by phase3/urls.py."""

from django.urls import re_path

from telemetry.routers import OptionalSlashRouter

from .api import (
    FeatureImpactViewSet,
    InsightViewSet,
    MLModelViewSet,
    SegmentViewSet,
    StatePatternViewSet,
    StatusView,
)

router = OptionalSlashRouter()
router.register("insights/insights", InsightViewSet, basename="insights-insight")
router.register("insights/models", MLModelViewSet, basename="insights-model")
router.register("insights/segments", SegmentViewSet, basename="insights-segment")
router.register("insights/feature-impact", FeatureImpactViewSet, basename="insights-impact")
router.register("insights/patterns", StatePatternViewSet, basename="insights-pattern")

urlpatterns = [
    re_path(r"^insights/status/?$", StatusView.as_view(), name="insights-status"),
    *router.urls,
]

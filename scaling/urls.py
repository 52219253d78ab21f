"""Routes of the scaling app, mounted under /admin/api/phase3/ by phase3.urls."""

from django.urls import re_path

from telemetry.routers import OptionalSlashRouter

from .api import DecisionViewSet, EvaluateView, ResourceViewSet, RuleViewSet, StatusView

router = OptionalSlashRouter()
router.register("scaling/resources", ResourceViewSet, basename="scaling-resource")
router.register("scaling/rules", RuleViewSet, basename="scaling-rule")
router.register("scaling/decisions", DecisionViewSet, basename="scaling-decision")

urlpatterns = [
    re_path(r"^scaling/status/?$", StatusView.as_view(), name="scaling-status"),
    re_path(r"^scaling/evaluate/?$", EvaluateView.as_view(), name="scaling-evaluate"),
    *router.urls,
]

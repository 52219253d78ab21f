"""Anomaly routes, mounted under /admin/api/phase3/ (trailing slash optional)."""

from django.urls import re_path

from telemetry.routers import OptionalSlashRouter

from .api import (
    AnomalyDetectView,
    AnomalyViewSet,
    DetectionRuleViewSet,
    DetectionTuningViewSet,
    InhibitionRuleViewSet,
    ResponseExecutionViewSet,
    ResponsePlaybookViewSet,
    SignalLayerRuleViewSet,
    SilenceViewSet,
)

router = OptionalSlashRouter()
router.register("anomaly/anomalies", AnomalyViewSet, basename="anomaly")
router.register("anomaly/rules", DetectionRuleViewSet, basename="anomaly-rule")
router.register("anomaly/tunings", DetectionTuningViewSet, basename="anomaly-tuning")
router.register("anomaly/playbooks", ResponsePlaybookViewSet, basename="anomaly-playbook")
router.register("anomaly/executions", ResponseExecutionViewSet, basename="anomaly-execution")
router.register("anomaly/silences", SilenceViewSet, basename="anomaly-silence")
router.register(
    "anomaly/inhibition-rules", InhibitionRuleViewSet, basename="anomaly-inhibition-rule"
)
router.register("anomaly/layer-rules", SignalLayerRuleViewSet, basename="anomaly-layer-rule")

urlpatterns = [
    re_path(r"^anomaly/detect/?$", AnomalyDetectView.as_view(), name="anomaly-detect"),
    *router.urls,
]

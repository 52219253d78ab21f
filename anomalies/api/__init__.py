"""Anomaly API: the `anomaly/detect` read, and viewsets for anomalies, rules, tunings,
playbooks, inhibition rules, signal layer rules, executions and silences. Views validate and call services;
roles come from the project defaults."""

from .anomalies import AnomalyDetectView, AnomalyViewSet
from .detection import DetectionRuleViewSet, DetectionTuningViewSet
from .layers import SignalLayerRuleViewSet
from .responses import InhibitionRuleViewSet, ResponseExecutionViewSet, ResponsePlaybookViewSet
from .silences import SilenceViewSet

__all__ = [
    "AnomalyDetectView",
    "AnomalyViewSet",
    "DetectionRuleViewSet",
    "DetectionTuningViewSet",
    "InhibitionRuleViewSet",
    "ResponseExecutionViewSet",
    "ResponsePlaybookViewSet",
    "SignalLayerRuleViewSet",
    "SilenceViewSet",
]

"""Admin pages: every anomaly model, operator actions, and a chart of each anomaly.

Django's autodiscovery imports this package; each module registers its pages."""

from . import anomalies, detection, layers, responses, silences

__all__ = ["anomalies", "detection", "layers", "responses", "silences"]

"""The only writers of the anomaly system. Split by subject; import from here.

`anomalies_score_recent` (scoring.py) is the scheduled job: telemetry -> engine ->
anomalies in one transaction; episodes.py turns scores into anomalies, causes.py ranks
their root causes, playbooks.py runs the responses (inhibition.py: one page per
incident), operators.py holds the operator
actions, silences.py ends maintenance windows early, retention.py deletes old history.
"""

from .operators import (
    BULK_ACTIONS,
    MAX_BULK,
    AnomalyStateError,
    anomalies_act,
    anomaly_acknowledge,
    anomaly_mark_false_positive,
    anomaly_resolve,
)
from .playbooks import (
    playbook_send_test,
    response_execute,
    response_notify_escalated,
    response_notify_incident,
    response_notify_reminder,
    response_notify_resolved,
)
from .retention import (
    MIN_RETENTION_DAYS,
    RetentionError,
    anomalies_enforce_retention,
    anomaly_retention_days,
)
from .scoring import anomalies_score_recent, learned_model_retrain
from .silences import (
    MAX_SILENCE_MINUTES,
    SilenceStateError,
    silence_anomaly_series,
    silence_expire,
)

__all__ = [
    "BULK_ACTIONS",
    "MAX_BULK",
    "MAX_SILENCE_MINUTES",
    "MIN_RETENTION_DAYS",
    "AnomalyStateError",
    "RetentionError",
    "SilenceStateError",
    "anomalies_act",
    "anomalies_enforce_retention",
    "anomalies_score_recent",
    "anomaly_acknowledge",
    "anomaly_mark_false_positive",
    "anomaly_resolve",
    "anomaly_retention_days",
    "learned_model_retrain",
    "playbook_send_test",
    "response_execute",
    "response_notify_escalated",
    "response_notify_incident",
    "response_notify_reminder",
    "response_notify_resolved",
    "silence_anomaly_series",
    "silence_expire",
]

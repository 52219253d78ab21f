"""Carrying out a response playbook's action: webhook, e-mail or another system's task.

These functions talk to the outside world and write nothing: the service records the
outcome. A failure raises `ResponseActionError`, which the task retries with backoff.
The webhook body follows Alertmanager's webhook format (version 4), so anything that
already receives Alertmanager notifications (PagerDuty, Opsgenie, Slack bridges) accepts it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import requests
from celery import current_app
from django.core.mail import send_mail

from .models import Anomaly, ResponsePlaybook

WEBHOOK_TIMEOUT_SECONDS = 10


class ResponseActionError(Exception):
    """The action did not go through (network error, non-2xx answer, refused mail)."""


def _iso(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else "0001-01-01T00:00:00Z"


def alertmanager_payload(anomaly: Anomaly, playbook: ResponsePlaybook) -> dict:
    series = anomaly.series
    status = "firing" if anomaly.ended_at is None else "resolved"
    labels = {
        "alertname": "Phase3Anomaly",
        "series": series.name,
        "severity": anomaly.severity,
        **{str(k): str(v) for k, v in (series.labels or {}).items()},
    }
    key = f"{series.pk}:{anomaly.pk}"
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": f"{series} is abnormal ({anomaly.severity})",
            "description": (
                f"observed {anomaly.observed:.4g} vs expected {anomaly.expected:.4g}; "
                f"methods: {', '.join(anomaly.methods) or 'none'}"
            ),
            "peak_score": f"{anomaly.peak_score:.3f}",
        },
        "startsAt": _iso(anomaly.started_at),
        "endsAt": _iso(anomaly.ended_at),
        "generatorURL": f"/admin/anomalies/anomaly/{anomaly.pk}/change/",
        "fingerprint": hashlib.sha1(key.encode()).hexdigest()[:16],
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="Phase3Anomaly", anomaly="{anomaly.pk}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": playbook.name,
        "groupLabels": {"alertname": "Phase3Anomaly"},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "/admin/",
        "alerts": [alert],
    }


def perform_action(anomaly: Anomaly, playbook: ResponsePlaybook) -> dict:
    """Do what the playbook says; return what to record as the result."""
    if playbook.action == ResponsePlaybook.Action.WEBHOOK:
        try:
            response = requests.post(
                playbook.target,
                json=alertmanager_payload(anomaly, playbook),
                timeout=WEBHOOK_TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            raise ResponseActionError(f"webhook failed: {exc}") from exc
        if not response.ok:
            raise ResponseActionError(f"webhook answered HTTP {response.status_code}")
        return {"http_status": response.status_code}
    if playbook.action == ResponsePlaybook.Action.EMAIL:
        recipients = [a.strip() for a in playbook.target.split(",") if a.strip()]
        payload = alertmanager_payload(anomaly, playbook)
        try:
            sent = send_mail(
                subject=payload["commonAnnotations"]["summary"],
                message=payload["commonAnnotations"]["description"],
                from_email=None,
                recipient_list=recipients,
            )
        except Exception as exc:  # mail backends raise many types (SMTP, socket...)
            raise ResponseActionError(f"e-mail failed: {exc}") from exc
        return {"sent": sent, "recipients": recipients}
    if playbook.action == ResponsePlaybook.Action.CELERY_TASK:
        kwargs = {**(playbook.arguments or {}), "anomaly_id": anomaly.pk}
        try:
            result = current_app.send_task(playbook.target, kwargs=kwargs)
        except Exception as exc:  # broker down, unknown routing...
            raise ResponseActionError(f"task {playbook.target} not sent: {exc}") from exc
        return {"task": playbook.target, "task_id": str(result.id), "kwargs": kwargs}
    raise ResponseActionError(f"unknown action {playbook.action!r}")

"""Anomaly history past its retention is deleted in batches, keeping what feedback taught
and what still goes on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from anomalies.models import (
    Anomaly,
    DismissedPattern,
    ResponseExecution,
    ResponsePlaybook,
    RootCauseCandidate,
)
from anomalies.services import anomalies_enforce_retention, anomaly_mark_false_positive
from tests.anomalies.test_inhibition import _anomaly, _blames

pytestmark = pytest.mark.django_db


def _closed(name: str, days_ago: float, **fields) -> Anomaly:
    ended = timezone.now() - timedelta(days=days_ago)
    a = _anomaly(name, ended - timedelta(hours=1))
    Anomaly.objects.filter(pk=a.pk).update(ended_at=ended, **fields)
    a.refresh_from_db()
    return a


def test_old_closed_anomalies_go_with_their_executions_and_causes(settings):
    settings.PHASE3_ANOMALY_RETENTION_DAYS = 100
    playbook = ResponsePlaybook.objects.create(name="pager", action="email", target="a@b.c")
    old_cause = _closed("db.connections.active", 120)
    old_effect = _closed("http.latency.p95", 120, status="resolved")
    _blames(old_effect, old_cause)
    ResponseExecution.objects.create(playbook=playbook, anomaly=old_cause)
    recent = _closed("http.errors.ratio", 30)
    ongoing = _anomaly("cpu.busy", timezone.now() - timedelta(days=200))  # never ended
    dismissed = _closed("queue.depth", 150)
    anomaly_mark_false_positive(anomaly_id=dismissed.pk)
    counts = anomalies_enforce_retention()
    assert counts == {
        "days": 100,
        "anomalies": 2,
        "executions": 1,
        "causes": 1,
        "batches": 1,
    }
    assert set(Anomaly.objects.values_list("pk", flat=True)) == {
        recent.pk,
        ongoing.pk,
        dismissed.pk,
    }
    assert DismissedPattern.objects.filter(anomaly=dismissed).exists()
    assert not RootCauseCandidate.objects.exists()
    assert anomalies_enforce_retention()["anomalies"] == 0


def test_a_big_history_is_deleted_a_batch_at_a_time(settings):
    settings.PHASE3_ANOMALY_RETENTION_DAYS = 90
    old = [_closed(f"s{i}", 100 + i) for i in range(5)]
    first = anomalies_enforce_retention(batch_size=2, max_batches=2)
    assert (first["anomalies"], first["batches"]) == (4, 2)
    assert list(Anomaly.objects.values_list("pk", flat=True)) == [old[-1].pk]  # oldest ids first
    assert anomalies_enforce_retention(batch_size=2, max_batches=2)["anomalies"] == 1


def test_a_retention_shorter_than_what_reads_history_is_refused(settings):
    settings.PHASE3_ANOMALY_RETENTION_DAYS = 30
    old = _closed("db.connections.active", 60)
    with pytest.raises(CommandError, match="at least 90"):
        call_command("enforce_anomaly_retention")
    assert Anomaly.objects.filter(pk=old.pk).exists()


def test_the_command_says_what_it_deleted_and_refuses_bad_arguments(settings, capsys):
    settings.PHASE3_ANOMALY_RETENTION_DAYS = 90
    _closed("db.connections.active", 91)
    call_command("enforce_anomaly_retention", "--batch-size", "10")
    assert capsys.readouterr().out.startswith(
        "Deleted 1 anomalies that ended over 90 days ago, with 0 executions"
    )
    with pytest.raises(CommandError, match="at least 1"):
        call_command("enforce_anomaly_retention", "--max-batches", "0")


def test_the_nightly_job_is_scheduled():
    from phase3.scheduling import declared_schedules

    (entry,) = [s for s in declared_schedules() if s["task"] == "anomalies.enforce_retention"]
    assert entry["crontab"] == "50 3 * * *"

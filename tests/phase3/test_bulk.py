"""One UPDATE for many rows (phase3.bulk): unnest on PostgreSQL, bulk_update elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from anomalies.models import Anomaly, DetectorState
from phase3.bulk import bulk_update_rows
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory


@pytest.mark.django_db
def test_each_row_gets_its_own_values_of_every_field_type():
    rows = [AnomalyFactory(series=series_ensure(name=f"bulk.{k}")) for k in range(3)]
    when = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    for k, a in enumerate(rows):
        a.peak_score = 0.1 * k
        a.ended_at = None if k == 1 else when.replace(minute=k)
        a.severity = ["info", "warning", "critical"][k]
        a.votes = {"statistical": float(k), "note": "é"}
        a.points = [[1.0, None, 2.0, 0.5, 0.9]] * k
    untouched = AnomalyFactory(series=series_ensure(name="bulk.other"), severity="info")
    with CaptureQueriesContext(connection) as ctx:
        written = bulk_update_rows(
            Anomaly, rows, ["peak_score", "ended_at", "severity", "votes", "points"]
        )
    assert written == 3 and len(ctx.captured_queries) == 1
    for k, a in enumerate(rows):
        stored = Anomaly.objects.get(pk=a.pk)
        assert stored.peak_score == pytest.approx(0.1 * k)
        assert stored.ended_at == (None if k == 1 else when.replace(minute=k))
        assert stored.severity == a.severity
        assert stored.votes == {"statistical": float(k), "note": "é"}
        assert stored.points == [[1.0, None, 2.0, 0.5, 0.9]] * k
    assert Anomaly.objects.get(pk=untouched.pk).severity == "info"


@pytest.mark.django_db
def test_binary_fields_and_unsaved_rows():
    series = series_ensure(name="bulk.state")
    saved = DetectorState.objects.create(
        series=series, state=b"old", points_scored=1, episode={}, last_ts=datetime.now(UTC)
    )
    unsaved = DetectorState(series=series_ensure(name="bulk.new"), state=b"x", episode={})
    saved.state, saved.points_scored = b"\x00new\xff", 7
    assert bulk_update_rows(DetectorState, [saved, unsaved], ["state", "points_scored"]) == 1
    saved.refresh_from_db()
    assert bytes(saved.state) == b"\x00new\xff" and saved.points_scored == 7
    assert not DetectorState.objects.filter(series__name="bulk.new").exists()

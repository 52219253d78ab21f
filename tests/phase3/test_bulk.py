"""Many rows in one statement (phase3.bulk): unnest on PostgreSQL, Django's bulk methods elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from anomalies.models import Anomaly, DetectorState, RootCauseCandidate
from phase3.bulk import bulk_update_rows, insert_columns
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


@pytest.mark.django_db
def test_rows_inserted_column_wise_read_back_as_written():
    effect = AnomalyFactory(series=series_ensure(name="bulk.effect"))
    causes = [AnomalyFactory(series=series_ensure(name=f"bulk.cause.{k}")) for k in range(2)]
    columns = {
        "anomaly": [effect.pk, effect.pk],
        "series": [causes[0].series_id, None],  # a deleted series is null
        "cause_anomaly": [c.pk for c in causes],
        "rank": [1, 2],
        "score": [0.75, 0.25],
        "lead_seconds": [600.0, -30.0],
        "evidence": [{"series": "db", "methods": ["statistical"]}, {}],
    }
    with CaptureQueriesContext(connection) as ctx:
        assert insert_columns(RootCauseCandidate, columns) == 2
    assert len(ctx.captured_queries) == 1
    rows = list(RootCauseCandidate.objects.filter(anomaly=effect).order_by("rank"))
    assert [(r.series_id, r.cause_anomaly_id, r.rank) for r in rows] == [
        (causes[0].series_id, causes[0].pk, 1),
        (None, causes[1].pk, 2),
    ]
    assert [(r.score, r.lead_seconds) for r in rows] == [(0.75, 600.0), (0.25, -30.0)]
    assert rows[0].evidence == {"series": "db", "methods": ["statistical"]}
    assert insert_columns(RootCauseCandidate, {k: [] for k in columns}) == 0
    with pytest.raises(ValueError, match="as many values"):
        insert_columns(RootCauseCandidate, {"rank": [1], "score": []})

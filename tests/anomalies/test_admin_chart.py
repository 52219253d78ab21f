"""The admin's chart of an anomaly: the series around it, its expected band and its points,
for an old anomaly whose raw samples retention removed, a dense series and an open one."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from anomalies.selectors import MAX_CHART_POINTS, anomaly_context
from telemetry.bulk import insert_samples
from telemetry.models import RollupState, Sample
from telemetry.selectors import to_datetime
from telemetry.services import rollups_update, samples_enforce_retention, series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.conftest import set_aside_telemetry

pytestmark = pytest.mark.django_db


def _anomaly_over(series, ts: np.ndarray, at: slice, **kw):
    """An anomaly on the points `at` of `ts`, with their band as the job stores it."""
    points = [[float(t), 50.0, 10.0, 1.0, 0.95] for t in ts[at]]
    start, end = to_datetime(ts[at][0]), to_datetime(ts[at][-1])
    return AnomalyFactory(series=series, started_at=start, last_seen_at=end, points=points, **kw)


def test_an_anomaly_older_than_the_raw_retention_is_charted_from_the_rollups(admin_client):
    # Raw samples are deleted after 90 days; hourly rollups keep the history readable. The
    # chart read raw samples only: the operator reviewing a past incident saw an empty plot.
    set_aside_telemetry()
    RollupState.objects.all().delete()
    series = series_ensure(name="svc.old.latency", unit="ms")
    now = timezone.now()
    t0 = (now - timedelta(days=120)).timestamp() // 3600 * 3600
    ts = t0 + 300.0 * np.arange(24 * 12)  # a day of five-minute points, 120 days ago
    insert_samples([series.pk] * ts.size, ts, 10.0 + np.sin(ts / 3600.0))
    anomaly = _anomaly_over(series, ts, slice(140, 150), ended_at=None)
    anomaly.ended_at = anomaly.last_seen_at
    anomaly.save()
    rollups_update(now=now)
    samples_enforce_retention(now=now)
    assert not Sample.objects.filter(series=series).exists()
    ctx = anomaly_context(anomaly)
    assert ctx["ts"].size >= 6 and np.isfinite(ctx["values"]).all()  # 6 h before it, hourly
    assert ctx["point_ts"].size == 10  # the band is the stored one, whatever the source
    page = admin_client.get(f"/admin/anomalies/anomaly/{anomaly.pk}/chart/")
    assert page.status_code == 200 and b"hourly" in page.content


def test_a_dense_series_is_downsampled_around_the_anomaly(admin_client):
    # One-second samples: 7 hours around the anomaly are 25,000 points, all sent to the
    # browser in one page.
    series = series_ensure(name="svc.dense.rps")
    end = timezone.now().timestamp() // 60 * 60
    ts = end - np.arange(8 * 3600)[::-1].astype(float)
    values = np.random.default_rng(1).normal(100, 5, ts.size)
    insert_samples([series.pk] * ts.size, ts, values)
    anomaly = _anomaly_over(series, ts, slice(-3700, -3600), ended_at=None)
    ctx = anomaly_context(anomaly)
    assert 0 < ctx["ts"].size <= MAX_CHART_POINTS
    covered = ctx["ts"][-1] - ctx["ts"][0]
    assert covered >= 6 * 3600  # still the whole window, coarser
    assert abs(np.nanmean(ctx["values"]) - values.mean()) < 1.0
    assert ctx["point_ts"].size == 100  # the abnormal points themselves are all kept
    page = admin_client.get(f"/admin/anomalies/anomaly/{anomaly.pk}/chart/")
    assert page.status_code == 200


def test_a_sparse_recent_anomaly_is_charted_from_raw_samples(admin_client):
    series = series_ensure(name="svc.recent.errors")
    end = timezone.now().timestamp() // 300 * 300
    ts = end - 300.0 * np.arange(100)[::-1]
    insert_samples([series.pk] * ts.size, ts, np.ones(ts.size))
    anomaly = _anomaly_over(series, ts, slice(-5, None), ended_at=None)  # still open
    ctx = anomaly_context(anomaly)
    assert ctx["source"] == "raw" and ctx["ts"].size == 6 * 12 + 5
    assert admin_client.get(f"/admin/anomalies/anomaly/{anomaly.pk}/chart/").status_code == 200


def test_the_chart_page_says_which_tuning_applies_to_the_series_now(admin_client):
    from anomalies.models import DetectionTuning

    series = series_ensure(name="svc.tuned.latency")
    end = timezone.now().timestamp() // 300 * 300
    ts = end - 300.0 * np.arange(50)[::-1]
    insert_samples([series.pk] * ts.size, ts, np.ones(ts.size))
    anomaly = _anomaly_over(series, ts, slice(-5, None))
    url = f"/admin/anomalies/anomaly/{anomaly.pk}/chart/"
    assert "none (sensitivity medium, either direction)" in admin_client.get(url).content.decode()
    DetectionTuning.objects.create(name="all svc", series_name="svc.*", sensitivity="high")
    DetectionTuning.objects.create(
        name="good news", series_name="svc.tuned.latency", direction="above"
    )
    page = admin_client.get(url).content.decode()
    assert "good news: sensitivity medium, direction above" in page


def test_the_chart_marks_the_changes_on_the_series_around_the_anomaly(admin_client):
    from telemetry.services import change_record

    series = series_ensure(name="svc.marked.latency", labels={"service": "checkout"})
    end = timezone.now().timestamp() // 60 * 60
    ts = end - 60.0 * np.arange(120)[::-1]
    insert_samples([series.pk] * ts.size, ts, np.full(ts.size, 10.0))
    anomaly = _anomaly_over(series, ts, slice(100, 110))
    onset = anomaly.started_at
    change_record(
        title="checkout 9.9.9", at=onset - timedelta(minutes=4), labels={"service": "checkout"}
    )
    change_record(title="search 1.0", at=onset - timedelta(minutes=3), labels={"service": "search"})
    ctx = anomaly_context(anomaly)
    assert [c.title for c in ctx["changes"]] == ["checkout 9.9.9"]
    page = admin_client.get(f"/admin/anomalies/anomaly/{anomaly.pk}/chart/").content.decode()
    assert "deploy checkout 9.9.9" in page and "search 1.0" not in page

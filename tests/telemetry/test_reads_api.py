"""GET telemetry/series and telemetry/series/{id}/samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from telemetry.bulk import insert_samples
from telemetry.downsample import AGGREGATIONS
from telemetry.services import series_ensure
from tests.choices import assert_names_valid_choices

pytestmark = pytest.mark.django_db

SERIES = "/admin/api/phase3/telemetry/series"
HOUR = 3600.0


@pytest.fixture
def viewer(client_with_role):
    return client_with_role("viewer")


@pytest.fixture
def latency():
    """Two days of one-minute samples of one series, values with a known pattern."""
    series = series_ensure(name="test.latency", labels={"endpoint": "/api/search"}, unit="ms")
    end = np.floor(datetime.now(UTC).timestamp() / HOUR) * HOUR
    ts = np.arange(end - 2 * 86400, end, 60.0)
    values = 100 + 10 * np.sin(ts / 5000.0)
    insert_samples(np.full(ts.size, series.pk), ts, values)
    return series, ts, values


def test_series_list_filters_and_shows_last_value(viewer, latency):
    series, ts, values = latency
    series_ensure(name="test.latency", labels={"endpoint": "/api/feed"})
    series_ensure(name="test.cpu")
    listed = viewer.get(SERIES, {"name_prefix": "test."}).json()
    assert listed["count"] == 3
    found = viewer.get(SERIES, {"name": "test.latency", "label.endpoint": "/api/search"}).json()[
        "results"
    ]
    assert [s["id"] for s in found] == [series.pk]
    assert found[0]["last_value"] == pytest.approx(values[-1])
    assert datetime.fromisoformat(found[0]["last_ts"]).timestamp() == ts[-1]
    assert viewer.get(SERIES, {"name_prefix": "test.c"}).json()["count"] == 1
    assert viewer.get(SERIES, {"name": "test.latency"}).json()["count"] == 2
    empty = viewer.get(SERIES, {"name": "test.cpu"}).json()["results"][0]
    assert empty["last_value"] is None


def test_an_empty_label_filter_lists_the_series_without_that_label(viewer, latency):
    series = latency[0]
    series_ensure(name="test.latency", labels={"endpoint": "/api/feed", "env": "prod"})
    found = viewer.get(SERIES, {"name": "test.latency", "label.env": ""}).json()["results"]
    assert [s["id"] for s in found] == [series.pk]


def test_series_detail_shows_its_last_value_whatever_the_list_filters_say(viewer, latency):
    # The detail ran the list's filters: /series/<id>/?name=other was a 404.
    series, _, values = latency
    response = viewer.get(f"{SERIES}/{series.pk}/", {"name": "other", "label.env": "x"})
    assert response.status_code == 200
    assert response.json()["last_value"] == pytest.approx(values[-1])


def test_series_list_query_count_does_not_grow_with_series(viewer, django_assert_max_num_queries):
    for i in range(30):
        series_ensure(name="test.many", labels={"i": str(i)})
    viewer.get(SERIES)
    with django_assert_max_num_queries(4):
        assert viewer.get(SERIES, {"name": "test.many", "limit": 30}).json()["count"] == 30


def test_raw_samples_of_a_range(viewer, latency):
    series, ts, values = latency
    start, end = ts[100], ts[160]
    body = viewer.get(f"{SERIES}/{series.pk}/samples", {"start": start, "end": end}).json()
    assert body["source"] == "raw" and body["step"] is None
    np.testing.assert_array_equal(body["ts"], ts[100:160])
    np.testing.assert_allclose(body["values"], values[100:160])


@pytest.mark.parametrize("step", ["300", "5m", "1h"])
def test_downsampled_samples_equal_a_numpy_mean(viewer, latency, step):
    series, ts, values = latency
    seconds = {"300": 300, "5m": 300, "1h": 3600}[step]
    start = datetime.fromtimestamp(ts[0], tz=UTC).isoformat()
    body = viewer.get(
        f"{SERIES}/{series.pk}/samples", {"start": start, "end": ts[-1] + 60, "step": step}
    ).json()
    assert body["step"] == seconds
    buckets = np.floor(ts / seconds) * seconds
    assert body["ts"] == sorted(set(buckets.tolist()))
    for k in (0, len(body["ts"]) // 2, -1):
        inside = buckets == body["ts"][k]
        assert body["values"][k] == pytest.approx(values[inside].mean())
    maxima = viewer.get(
        f"{SERIES}/{series.pk}/samples",
        {"start": ts[0], "end": ts[-1] + 60, "step": step, "agg": "max"},
    ).json()
    assert maxima["values"][0] == pytest.approx(values[buckets == maxima["ts"][0]].max())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "nan"}, "end"),
        ({"start": 2000, "end": 1000}, "end"),
        ({"step": "5 parsecs"}, "step"),
        ({"step": "0"}, "step"),
        ({"step": "1", "start": 0, "end": 1e9}, "step"),
        ({"agg": "median"}, "agg"),
        # before year 1: Python's datetime cannot hold them (these were 500s)
        ({"start": -1e11}, "start"),
        ({"start": "0001-01-01T00:00:00Z", "step": "2w"}, "start"),
        # steps of millennia were taken (and moved start before year 1): the cap names step
        ({"start": -1, "end": 10, "step": "99999999999999999999d"}, "step"),
        ({"step": "52000w"}, "step"),
        ({"step": "367d"}, "step"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(viewer, latency, params, field):
    series = latency[0]
    response = viewer.get(f"{SERIES}/{series.pk}/samples", params)
    assert response.status_code == 400
    assert field in response.json()


def test_start_and_end_are_read_like_an_ingested_ts(viewer, latency):
    """Reads took epoch strings but said nothing useful of milliseconds ("must be an
    ISO-8601 timestamp or epoch seconds"); ingestion said "divide by 1000". One parser now."""
    series, ts, _ = latency
    as_text = {"start": str(int(ts[100])), "end": f"{ts[160]:.1f}"}
    body = viewer.get(f"{SERIES}/{series.pk}/samples", as_text).json()
    np.testing.assert_array_equal(body["ts"], ts[100:160])
    millis = viewer.get(f"{SERIES}/{series.pk}/samples", {"start": int(ts[100] * 1000)})
    assert millis.status_code == 400
    [message] = millis.json()["start"]
    assert "divide by 1000" in message


def test_too_many_raw_points_asks_for_a_step(viewer, latency, settings):
    series, ts, _ = latency
    settings.PHASE3_MAX_RAW_POINTS = 100
    params = {"start": ts[0], "end": ts[-1]}
    response = viewer.get(f"{SERIES}/{series.pk}/samples", params)
    assert response.status_code == 400 and "step" in response.json()
    assert viewer.get(f"{SERIES}/{series.pk}/samples", {**params, "step": "1h"}).status_code == 200


def test_a_raw_read_past_the_raw_retention_answers_from_the_rollups(viewer, latency, settings):
    """It answered only the samples still kept: a silent gap for the older part."""
    from django.utils import timezone

    from telemetry import services

    series, ts, values = latency
    settings.PHASE3_RAW_RETENTION_DAYS = 1
    now = timezone.now()
    services.rollups_update(now=now)
    services.samples_enforce_retention(now=now)
    body = viewer.get(f"{SERIES}/{series.pk}/samples", {"start": ts[0], "end": ts[-1] + 60})
    assert body.status_code == 200, body.content
    body = body.json()
    raw_from = datetime.fromisoformat(body["raw_from"]).timestamp()
    assert raw_from == np.floor((now.timestamp() - 86400) / HOUR) * HOUR
    assert body["source"] == "rollup+raw" and body["rollup_step"] == HOUR
    assert body["agg"] == "mean"
    got_ts, got = np.array(body["ts"]), np.array(body["values"])
    old = got_ts < raw_from
    hours = np.floor(ts / HOUR) * HOUR
    assert got_ts[old].tolist() == sorted(set(hours[ts < raw_from].tolist()))
    assert got[old][0] == pytest.approx(values[hours == got_ts[0]].mean())
    np.testing.assert_array_equal(got_ts[~old], ts[ts >= raw_from])
    fine = viewer.get(f"{SERIES}/{series.pk}/samples", {"start": ts[0], "step": "5m"}).json()
    assert fine["ts"][0] == ts[0] and fine["rollup_step"] == HOUR
    inside = viewer.get(f"{SERIES}/{series.pk}/samples", {"start": ts[-10]}).json()
    assert inside["source"] == "raw" and inside["rollup_step"] is None
    assert inside["raw_from"] == body["raw_from"]


def test_unknown_series_is_a_404(viewer):
    assert viewer.get(f"{SERIES}/999999/samples").status_code == 404


def test_default_range_is_the_last_day(viewer, latency):
    series = latency[0]
    body = viewer.get(f"{SERIES}/{series.pk}/samples", {"step": "1h"}).json()
    span = datetime.fromisoformat(body["end"]) - datetime.fromisoformat(body["start"])
    assert span == timedelta(days=1)
    assert 23 <= len(body["ts"]) <= 25


def test_a_bad_aggregation_is_400_listing_the_aggregations(viewer):
    series = series_ensure(name="test.cpu")
    response = viewer.get(f"{SERIES}/{series.pk}/samples", {"step": "1h", "agg": "median"})
    assert_names_valid_choices(response, "agg", "median", AGGREGATIONS)

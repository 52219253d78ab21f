"""POST telemetry/samples and telemetry/events: all or nothing, idempotent, fast to refuse."""

from __future__ import annotations

import time
from unittest import mock

import orjson
import pytest

from telemetry import services
from telemetry.models import Event, Sample, Series
from telemetry.validation import MAX_ROWS, validate_samples

pytestmark = pytest.mark.django_db

SAMPLES = "/admin/api/phase3/telemetry/samples"
EVENTS = "/admin/api/phase3/telemetry/events"
# Names no fixture uses: the session's demo world may share the database.
NAME = "test.ingest.latency"


def rows(n: int, *, series: int = 1, start: float | None = None) -> list[dict]:
    start = time.time() - 3600 if start is None else start
    return [
        {
            "series": NAME,
            "labels": {"endpoint": f"/api/e{i % series}"},
            "ts": start + (i // series) * 10.0,
            "value": float(i),
            "unit": "ms",
        }
        for i in range(n)
    ]


def samples():
    return Sample.objects.filter(series__name__startswith="test.")


def post(client, url: str, payload) -> object:
    return client.post(url, orjson.dumps(payload), content_type="application/json")


@pytest.fixture
def operator(client_with_role):
    return client_with_role("operator")


def test_batch_is_written_and_series_created_on_first_sight(operator):
    response = post(operator, SAMPLES, {"samples": rows(30, series=3)})
    assert response.status_code == 200, response.content
    assert response.json() == {"received": 30, "written": 30, "series_created": 3}
    assert samples().count() == 30
    series = Series.objects.get(name=NAME, labels_key="endpoint=/api/e1")
    assert series.labels == {"endpoint": "/api/e1"} and series.unit == "ms"
    assert sorted(series.samples.values_list("value", flat=True)) == [
        float(i) for i in range(1, 30, 3)
    ]


def test_resending_a_batch_changes_nothing(operator):
    batch = {"samples": rows(20, series=2)}
    post(operator, SAMPLES, batch)
    before = list(samples().order_by("pk").values_list("series_id", "ts", "value"))
    again = post(operator, SAMPLES, batch)
    assert again.status_code == 200
    assert again.json() == {"received": 20, "written": 0, "series_created": 0}
    assert list(samples().order_by("pk").values_list("series_id", "ts", "value")) == before


@pytest.mark.parametrize(
    ("field", "bad"),
    [("value", "NaN"), ("value", 1e400), ("ts", "not a time"), ("ts", 4e9), ("colour", "red")],
)
def test_one_bad_row_refuses_the_batch_naming_row_and_field(operator, field, bad):
    batch = rows(40, series=4)
    batch[17][field] = bad
    response = post(operator, SAMPLES, {"samples": batch})
    assert response.status_code == 400
    assert list(response.json()["samples"]) == ["17"]
    assert field in response.json()["samples"]["17"]
    assert samples().count() == 0 and not Series.objects.filter(name__startswith="test.").exists()


@pytest.mark.parametrize("bad", [[], "", 0, False])
@pytest.mark.parametrize("bad_first", [True, False])
def test_falsy_labels_that_are_not_an_object_are_a_400_of_their_own_row(operator, bad, bad_first):
    batch = rows(2)
    for row in batch:
        del row["labels"]  # "no labels" is a series of its own, and valid
    bad_row = 0 if bad_first else 1
    batch[bad_row]["labels"] = bad
    response = post(operator, SAMPLES, {"samples": batch})
    assert response.status_code == 400, response.content
    assert response.json()["samples"] == {str(bad_row): {"labels": [mock.ANY]}}
    assert samples().count() == 0


def test_nan_literal_in_the_body_is_a_400_not_a_500(operator):
    body = b'{"samples": [{"series": "x", "ts": 1, "value": NaN}]}'
    response = operator.post(SAMPLES, body, content_type="application/json")
    assert response.status_code == 400
    assert samples().count() == 0


def test_future_timestamps_limit_is_configurable(operator, settings):
    batch = rows(1, start=time.time() + 600)
    assert post(operator, SAMPLES, {"samples": batch}).status_code == 400
    settings.PHASE3_INGEST_MAX_FUTURE_SECONDS = 3600
    assert post(operator, SAMPLES, {"samples": batch}).status_code == 200


def test_more_than_the_row_limit_is_refused(operator):
    row = rows(1)[0]
    response = post(operator, SAMPLES, {"samples": [row] * (MAX_ROWS + 1)})
    assert response.status_code == 400
    assert str(MAX_ROWS) in response.json()["samples"][0]
    assert samples().count() == 0


def test_a_failure_while_writing_leaves_nothing_behind(monkeypatch):
    batch = validate_samples({"samples": rows(10, series=5)}, bounds=services.ingest_bounds())

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "insert_samples_us", broken)
    with pytest.raises(RuntimeError):
        services.samples_write_batch(batch=batch)
    assert not Series.objects.filter(
        name__startswith="test."
    ).exists()  # the series created first were rolled back too


def test_roles_and_keys(client_with_role, api_client):
    batch = {"samples": rows(2)}
    assert post(api_client, SAMPLES, batch).status_code == 401
    assert post(client_with_role("viewer"), SAMPLES, batch).status_code == 403
    assert post(client_with_role("admin"), SAMPLES, batch).status_code == 200


def test_malformed_and_oversized_bodies(operator, settings):
    response = operator.post(SAMPLES, b'{"samples": [', content_type="application/json")
    assert response.status_code == 400
    settings.PHASE3_INGEST_MAX_BODY_BYTES = 200
    response = post(operator, SAMPLES, {"samples": rows(20)})
    assert response.status_code == 413
    assert samples().count() == 0


def test_trailing_slash_is_optional(operator):
    assert post(operator, SAMPLES + "/", {"samples": rows(1)}).status_code == 200


def test_query_count_does_not_grow_with_the_batch(operator, django_assert_max_num_queries):
    # key lookup, savepoints, series read / create / re-read, COPY's savepoint, rollup state:
    # the same handful for 2 rows as for 5,000 (COPY itself runs on the raw psycopg cursor).
    post(operator, SAMPLES, {"samples": rows(1)})  # the key's first use is recorded once
    with django_assert_max_num_queries(10):
        assert (
            post(operator, SAMPLES, {"samples": rows(2, start=time.time() - 7200)}).status_code
            == 200
        )
    with django_assert_max_num_queries(10):
        response = post(
            operator, SAMPLES, {"samples": rows(5000, series=50, start=time.time() - 9000)}
        )
    assert response.json()["written"] == 5000


# --- events ------------------------------------------------------------------------------------


def events(n: int) -> list[dict]:
    now = time.time()
    return [
        {
            "user_id": f"test-u{i % 7}",
            "name": "page_view",
            "ts": now - i,
            "properties": {"feature": "feed"},
        }
        for i in range(n)
    ]


def test_events_are_written_and_a_resend_changes_nothing(operator):
    batch = {"events": events(25)}
    first = post(operator, EVENTS, batch)
    assert first.status_code == 200 and first.json()["written"] == 25
    assert post(operator, EVENTS, batch).json()["written"] == 0
    assert Event.objects.filter(user_id__startswith="test-").count() == 25
    assert (
        Event.objects.filter(user_id__startswith="test-", properties__feature="feed").count() == 25
    )


def test_client_ids_are_kept(operator):
    batch = events(2)
    batch[0]["client_id"] = "mobile-42"
    post(operator, EVENTS, {"events": batch})
    assert Event.objects.filter(client_id="mobile-42").count() == 1


def test_bad_event_refuses_the_batch(operator):
    batch = events(10)
    batch[4]["properties"] = "feature=feed"
    response = post(operator, EVENTS, {"events": batch})
    assert response.status_code == 400
    assert response.json() == {"events": {"4": {"properties": ["must be an object"]}}}
    assert Event.objects.filter(user_id__startswith="test-").count() == 0


@pytest.mark.parametrize(
    "ts", [-1e12, -9e12, 9.5e12, -62135596800, "0001-01-01T00:00:00Z", 0, "1970-01-01T00:00:00Z"]
)
def test_an_event_before_2000_or_beyond_any_calendar_is_a_400_not_a_500(operator, ts):
    """-1e12 was a 500 (PostgreSQL: timestamp out of range) and year 1 was stored.

    An event from 1970 or year 1 is an exporter's unset clock or unit mistake; stored, it
    stretched every "since the first event" figure over centuries.
    """
    batch = events(3)
    batch[1]["ts"] = ts
    response = post(operator, EVENTS, {"events": batch})
    assert response.status_code == 400, response.content
    assert list(response.json()["events"]) == ["1"]
    assert list(response.json()["events"]["1"]) == ["ts"]
    assert Event.objects.filter(user_id__startswith="test-").count() == 0


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e9])
def test_epoch_milliseconds_are_refused_naming_the_unit(operator, scale):
    """An exporter sending milliseconds was told "is in the future", which says nothing of why."""
    batch = rows(3)
    batch[2]["ts"] = time.time() * scale
    response = post(operator, SAMPLES, {"samples": batch})
    assert response.status_code == 400, response.content
    [message] = response.json()["samples"]["2"]["ts"]
    assert "seconds" in message and "milliseconds" in message
    assert samples().count() == 0


def test_epoch_seconds_sent_as_a_string_are_accepted_as_reads_accept_them(operator):
    # "1700000000" was refused ("not a valid ISO-8601 timestamp") though reads took it
    batch = rows(2)
    batch[0]["ts"] = str(int(batch[0]["ts"]))
    batch[1]["ts"] = f"{batch[1]['ts']:.3f}"
    response = post(operator, SAMPLES, {"samples": batch})
    assert response.status_code == 200, response.content
    stored = sorted(samples().values_list("ts", flat=True))
    assert [t.timestamp() for t in stored] == [float(batch[0]["ts"]), float(batch[1]["ts"])]


def test_an_empty_label_value_writes_to_the_series_without_that_label(operator):
    batch = rows(4)
    for row in batch[:2]:
        row["labels"] = {**row["labels"], "env": ""}
    response = post(operator, SAMPLES, {"samples": batch})
    assert response.status_code == 200, response.content
    assert response.json()["series_created"] == 1
    [series] = Series.objects.filter(name=NAME)
    assert series.labels == {"endpoint": "/api/e0"} and series.samples.count() == 4


@pytest.mark.parametrize(
    "name", [" test.cpu", "test.cpu ", "test.cpu\n", "test.\tcpu", "test.\x7f"]
)
def test_a_series_name_with_edge_whitespace_or_control_characters_is_refused(operator, name):
    """ "cpu\\n" from an exporter's line-based config became a second series beside "cpu",
    indistinguishable from it in the admin, and the systems read only the first."""
    batch = [{"series": "test.cpu", "ts": time.time() - 60, "value": 1.0}]
    batch.append({**batch[0], "series": name})
    response = post(operator, SAMPLES, {"samples": batch})
    assert response.status_code == 400, response.content
    assert list(response.json()["samples"]) == ["1"]
    assert list(response.json()["samples"]["1"]) == ["series"]
    assert not Series.objects.filter(name__startswith="test.").exists()


def test_unicode_series_names_and_label_values_are_kept(operator):
    row = {"series": "test.größe.✓", "labels": {"page": "/über/🎉"}, "ts": time.time(), "value": 1}
    assert post(operator, SAMPLES, {"samples": [row]}).status_code == 200
    assert Series.objects.get(name="test.größe.✓").labels == {"page": "/über/🎉"}

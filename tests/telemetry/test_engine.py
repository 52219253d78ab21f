"""Pure parts of telemetry: batch validation, downsampling, the binary COPY encoder, the demo world.

No database and no Django settings: run with ``-p no:django --noconftest``.
"""

from __future__ import annotations

import struct
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from telemetry.demo_world import KINDS, build_world
from telemetry.downsample import (
    finish,
    merge_partials,
    parse_step,
    partials_from_samples,
)
from telemetry.pgcopy import PG_EPOCH_US, samples_copy_payload
from telemetry.validation import (
    MAX_ROWS,
    BatchInvalid,
    TimeBounds,
    gc_paused,
    parse_instant,
    validate_events,
    validate_samples,
)

NOW = 1_800_000_000.0
BOUNDS = TimeBounds(newest=NOW + 300, oldest=NOW - 90 * 86400)


def sample(**overrides) -> dict:
    row = {"series": "http.latency.p95", "labels": {"endpoint": "/api/search"}, "ts": NOW - 60}
    row["value"] = 12.5
    row.update(overrides)
    return row


def errors_of(payload, validate=validate_samples) -> dict:
    with pytest.raises(BatchInvalid) as caught:
        validate(payload, bounds=BOUNDS)
    return caught.value.errors


# --- samples -------------------------------------------------------------------------------


def test_valid_batch_becomes_columns_with_one_entry_per_series():
    rows = [sample(ts=NOW - 60 * i, value=float(i)) for i in range(10)]
    rows += [
        sample(labels={"endpoint": "/api/feed"}, ts=NOW - 60 * i, value=-1.0) for i in range(5)
    ]
    batch = validate_samples({"samples": rows}, bounds=BOUNDS)
    assert len(batch) == 15
    assert [s[1] for s in batch.series] == [{"endpoint": "/api/search"}, {"endpoint": "/api/feed"}]
    np.testing.assert_array_equal(batch.series_index, [0] * 10 + [1] * 5)
    np.testing.assert_array_equal(batch.values[:10], np.arange(10.0))
    expected_us = [round((NOW - 60 * i) * 1e6) for i in range(10)]
    np.testing.assert_array_equal(batch.ts_us[:10], expected_us)


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("value", float("nan"), "finite"),
        ("value", float("inf"), "finite"),
        ("value", "1.5", "finite"),
        ("value", True, "finite"),
        ("value", None, "required"),
        ("ts", "yesterday", "ISO-8601"),
        ("ts", "2026-13-01T00:00:00Z", "ISO-8601"),
        ("ts", NOW + 3600, "future"),
        ("ts", NOW - 91 * 86400, "retention"),
        ("ts", float("nan"), "finite"),
        ("ts", [1, 2], "ISO-8601"),
        ("series", "", "non-empty"),
        ("series", 7, "non-empty"),
        ("series", "x" * 201, "200"),
        ("labels", ["a"], "object"),
        ("labels", {"endpoint": 3}, "string"),
        ("labels", {"bad key": "x"}, "must match"),
        ("labels", {"k": "a,b=c"}, "may not contain"),
        ("unit", 5, "string"),
    ],
)
def test_each_kind_of_bad_row_names_the_row_and_the_field(field, bad, message):
    rows = [sample(ts=NOW - 60 * i) for i in range(20)]
    rows[17][field] = bad
    errors = errors_of({"samples": rows})
    assert list(errors["samples"]) == ["17"]
    assert list(errors["samples"]["17"]) == [field]
    assert message in errors["samples"]["17"][field][0]


def test_missing_and_unknown_fields_are_named():
    rows = [sample(), sample(ts=NOW - 120, colour="red")]
    del rows[0]["value"]
    errors = errors_of({"samples": rows})["samples"]
    assert errors["0"] == {"value": ["this field is required"]}
    assert errors["1"] == {"colour": ["unknown field"]}


def test_batch_shape_errors():
    assert "samples" in errors_of({})
    assert errors_of({"samples": [], "extra": 1}) == {"extra": ["unknown field"]}
    assert "must not be empty" in errors_of({"samples": []})["samples"][0]
    assert "must be a list" in errors_of({"samples": {"a": 1}})["samples"][0]
    assert errors_of([1, 2])["non_field_errors"]
    assert errors_of({"samples": [5]})["samples"]["0"]["non_field_errors"]


def test_more_than_max_rows_is_refused_before_any_row_is_read():
    rows = [sample()] * (MAX_ROWS + 1)
    started = time.perf_counter()
    errors = errors_of({"samples": rows})
    assert str(MAX_ROWS) in errors["samples"][0]
    assert time.perf_counter() - started < 0.5


def test_error_answer_is_capped_but_every_bad_row_still_fails_the_batch():
    rows = [sample(ts=NOW - 60 * i, value="x") for i in range(1000)]
    errors = errors_of({"samples": rows})["samples"]
    assert 0 < len(errors) <= 100 and "0" in errors


def test_iso_strings_with_offsets_naive_and_epoch_agree():
    moment = datetime.fromtimestamp(NOW - 3600, tz=UTC)
    forms = [
        moment.isoformat(),
        moment.isoformat().replace("+00:00", "Z"),
        moment.astimezone().isoformat(),  # same instant, local offset
        moment.replace(tzinfo=None).isoformat(),  # naive means UTC
        NOW - 3600,
        int(NOW - 3600),
    ]
    labels = [{"form": str(i)} for i in range(len(forms))]
    batch = validate_samples(
        {"samples": [sample(ts=f, labels=lb) for f, lb in zip(forms, labels)]}, bounds=BOUNDS
    )
    assert set(batch.ts_us.tolist()) == {round((NOW - 3600) * 1e6)}


def test_epoch_seconds_as_a_string_are_read_as_at_ingestion_as_in_reads():
    """An epoch string ("1800000000") was refused by ingestion ("not a valid ISO-8601
    timestamp") while reads took it: one parser now serves both."""
    forms = [str(int(NOW - 3600)), f"{NOW - 3600:.1f}", f" {int(NOW - 3600)} ", "1.7999964e9"]
    labels = [{"form": str(i)} for i in range(len(forms))]
    batch = validate_samples(
        {"samples": [sample(ts=f, labels=lb) for f, lb in zip(forms, labels)]}, bounds=BOUNDS
    )
    assert set(batch.ts_us.tolist()) == {round((NOW - 3600) * 1e6)}
    for form in forms:
        assert parse_instant(form).timestamp() == NOW - 3600


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("yesterday", "ISO-8601"),
        ("2026-13-01T00:00:00Z", "ISO-8601"),
        ("nan", "ISO-8601"),
        (str(int(NOW * 1000)), "divide by 1000"),  # milliseconds, as a string
        (NOW * 1000, "divide by 1000"),  # milliseconds, as a number
        (-1e11, "out of range"),
        ("-62135596801", "out of range"),  # one second before year 1
        (float("inf"), "finite"),
        ([1, 2], "ISO-8601"),
        (True, "ISO-8601"),
    ],
)
def test_ingestion_and_reads_refuse_a_timestamp_with_the_same_words(raw, words):
    bounds = TimeBounds(newest=1e12)  # no range of its own: only the parser speaks
    with pytest.raises(BatchInvalid) as caught:
        validate_samples({"samples": [sample(ts=raw)]}, bounds=bounds)
    [ingest_message] = caught.value.errors["samples"]["0"]["ts"]
    with pytest.raises(ValueError) as read:
        parse_instant(raw)
    assert str(read.value) == ingest_message
    assert words in ingest_message


def test_dates_pandas_cannot_hold_are_still_read_through_python():
    # pandas' nanosecond timestamps stop at 1677 and 2262; a read's window may not
    assert parse_instant("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_instant("9999-12-31").year == 9999
    assert parse_instant("2026-W48").date().isoformat() == "2026-11-23"
    with pytest.raises(ValueError, match="out of range"):
        parse_instant("0001-01-01T00:00:00+05:00")


def test_same_series_with_labels_in_another_order_is_one_series():
    rows = [
        sample(labels={"a": "1", "b": "2"}, ts=NOW - 60),
        sample(labels={"b": "2", "a": "1"}, ts=NOW - 120),
    ]
    batch = validate_samples({"samples": rows}, bounds=BOUNDS)
    assert len(batch.series) == 1
    assert batch.series_index.tolist() == [0, 0]


def test_a_label_with_an_empty_value_is_the_same_series_as_without_it():
    # Prometheus' rule; {"env": ""} used to be a series of its own
    rows = [
        sample(labels={"endpoint": "/api/search", "env": ""}, ts=NOW - 60),
        sample(labels={"endpoint": "/api/search"}, ts=NOW - 120),
        sample(labels={"env": ""}, ts=NOW - 60),
        sample(labels=None, ts=NOW - 120),
    ]
    batch = validate_samples({"samples": rows}, bounds=BOUNDS)
    assert [s[1] for s in batch.series] == [{"endpoint": "/api/search"}, {}]
    assert batch.series_index.tolist() == [0, 0, 1, 1]


def test_conflicting_duplicates_are_refused_identical_ones_pass():
    same = [sample(ts=NOW - 60, value=1.0), sample(ts=NOW - 60, value=1.0)]
    assert len(validate_samples({"samples": same}, bounds=BOUNDS)) == 2
    conflicting = [
        sample(ts=NOW - 60, value=1.0),
        sample(ts=NOW - 120),
        sample(ts=NOW - 60, value=2.0),
    ]
    errors = errors_of({"samples": conflicting})["samples"]
    assert list(errors) == ["2"] and "row 0" in errors["2"]["ts"][0]


def test_validating_100k_rows_is_fast():
    rows = [
        sample(labels={"host": f"h{i % 50}"}, ts=NOW - 86400 + i * 0.5, value=float(i))
        for i in range(100_000)
    ]
    started = time.perf_counter()
    with gc_paused():
        batch = validate_samples({"samples": rows}, bounds=BOUNDS)
    elapsed = time.perf_counter() - started
    assert len(batch) == 100_000 and len(batch.series) == 50
    assert elapsed < 5.0, elapsed  # a DRF serializer per row takes tens of seconds


def test_gc_paused_restores_the_collector():
    import gc

    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()


# --- events --------------------------------------------------------------------------------


def event(**overrides) -> dict:
    row = {"user_id": "u1", "name": "page_view", "ts": NOW - 30, "properties": {"feature": "feed"}}
    row.update(overrides)
    return row


def test_events_validate_and_get_stable_ids_from_content():
    rows = [event(), event(ts=NOW - 40), event(client_id="abc")]
    first = validate_events({"events": rows}, bounds=BOUNDS)
    again = validate_events({"events": rows}, bounds=BOUNDS)
    assert first.client_id == again.client_id
    assert first.client_id[2] == "abc"
    assert len(set(first.client_id)) == 3
    assert first.properties_json[0] == '{"feature":"feed"}'


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("user_id", ""),
        ("user_id", 5),
        ("name", "x" * 101),
        ("ts", "soon"),
        ("ts", NOW + 3600),
        ("properties", [1]),
        ("session_id", {"a": 1}),
        ("client_id", 9),
        ("unknown", 1),
    ],
)
def test_bad_events_name_row_and_field(field, bad):
    rows = [event(ts=NOW - i) for i in range(5)]
    rows[3][field] = bad
    errors = errors_of({"events": rows}, validate_events)
    assert list(errors["events"]) == ["3"]
    assert field in errors["events"]["3"]


def test_duplicate_client_ids_in_one_batch_are_refused():
    errors = errors_of({"events": [event(client_id="a"), event(client_id="a")]}, validate_events)
    assert "row 0" in errors["events"]["1"]["client_id"][0]


# --- downsampling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("300", 300), ("300s", 300), ("5m", 300), ("1h", 3600), ("2d", 172800)]
)
def test_parse_step(text, seconds):
    assert parse_step(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-5m", "0", "0.5", "367d", "53w", "1e400"])
def test_parse_step_refuses_nonsense(text):
    with pytest.raises(ValueError):
        parse_step(text)


def test_a_step_of_up_to_a_leap_year_is_taken_and_no_more():
    """Steps of millennia were accepted; 366 days is the cap, and the error names it."""
    assert parse_step("366d") == 366 * 86400
    with pytest.raises(ValueError, match="366 days"):
        parse_step("1000000w")


def test_downsampling_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    ts = np.sort(rng.uniform(0, 86400, 5000))
    values = rng.normal(size=5000)
    for agg in ("mean", "min", "max", "sum", "count"):
        starts, out = finish(partials_from_samples(ts, values, step=900, origin=0.0), agg)
        for k in rng.choice(starts.size, 5, replace=False):
            inside = (ts >= starts[k]) & (ts < starts[k] + 900)
            expected = {
                "mean": values[inside].mean(),
                "min": values[inside].min(),
                "max": values[inside].max(),
                "sum": values[inside].sum(),
                "count": inside.sum(),
            }[agg]
            assert out[k] == pytest.approx(expected)


def test_hourly_partials_merge_into_the_same_answer_as_raw():
    """Rollups (hourly partials) for the old part + raw for the rest == raw downsampling."""
    rng = np.random.default_rng(4)
    ts = np.arange(0, 10 * 86400, 60.0)
    values = rng.gamma(2.0, 3.0, ts.size)
    split = 4 * 86400 + 7 * 3600  # not on a day boundary: a bucket is fed from both sides
    old = ts < split
    hourly = partials_from_samples(ts[old], values[old], step=3600, origin=0.0)
    recent = partials_from_samples(ts[~old], values[~old], step=86400, origin=0.0)
    merged = merge_partials([hourly, recent], step=86400, origin=0.0)
    direct = partials_from_samples(ts, values, step=86400, origin=0.0)
    for agg in ("mean", "min", "max", "sum", "count"):
        a_ts, a = finish(merged, agg)
        b_ts, b = finish(direct, agg)
        np.testing.assert_array_equal(a_ts, b_ts)
        np.testing.assert_allclose(a, b, rtol=1e-12)


# --- binary COPY ----------------------------------------------------------------------------


def test_binary_copy_rows_decode_to_the_input():
    sids = np.array([1, 2, 3_000_000_000], dtype=np.int64)
    ts_us = np.array([0, 1_764_000_000_123_456, -5], dtype=np.int64)
    values = np.array([1.5, -0.0, 1e300])
    payload = samples_copy_payload(sids, ts_us, values)
    assert payload.startswith(b"PGCOPY\n\xff\r\n\x00")
    assert payload.endswith(b"\xff\xff")
    body = payload[19:-2]
    assert len(body) == 3 * 38
    for k in range(3):
        fields, l1, sid, l2, ts, l3, value = struct.unpack(">hiqiqid", body[38 * k : 38 * (k + 1)])
        assert (fields, l1, l2, l3) == (3, 8, 8, 8)
        assert sid == sids[k] and ts + PG_EPOCH_US == ts_us[k] and value == values[k]


# --- demo world -----------------------------------------------------------------------------

END = 1_764_000_000.0
STEP = 300


@pytest.fixture(scope="module")
def world():
    return build_world(end=END, days=7, users=120, seed=5, step_seconds=STEP)


def test_demo_world_is_reproducible_with_the_same_seed(world):
    again = build_world(end=END, days=7, users=120, seed=5, step_seconds=300)
    other = build_world(end=END, days=7, users=120, seed=6, step_seconds=300)
    for a, b in zip(world.series, again.series):
        np.testing.assert_array_equal(a.values, b.values)
    assert world.events.ts == again.events.ts and world.user_kinds == again.user_kinds
    assert any(not np.array_equal(a.values, b.values) for a, b in zip(world.series, other.series))


def _onset(world, key, inc) -> float:
    """First time a series moves more than half its largest excursion from its pre-incident median."""
    name, labels = key
    series = next(s for s in world.series if s.name == name and s.labels == labels)
    before = (world.ts >= inc.start - 6 * 3600) & (world.ts < inc.start)
    window = (world.ts >= inc.start - 3600) & (world.ts <= inc.end + 2 * 3600)
    deviation = np.abs(series.values[window] - np.median(series.values[before]))
    return float(world.ts[window][np.argmax(deviation > 0.5 * deviation.max())])


def test_demo_incidents_causes_precede_their_effects(world):
    assert world.incidents
    lagged = 0
    for inc in world.incidents:
        cause = _onset(world, inc.cause, inc)
        assert inc.start - 3600 <= cause <= inc.end
        for effect in inc.effects:
            # an aggregate of the cause (overall error ratio) may move within the same step
            effect_onset = _onset(world, effect, inc)
            assert cause <= effect_onset + STEP, (inc.name, effect)
            lagged += effect_onset > cause
    assert lagged >= 3  # most effects come strictly after their cause


def test_demo_user_kinds_are_all_present_and_act(world):
    kinds = set(world.user_kinds.values())
    assert set(KINDS) <= kinds
    active = set(world.events.user_id)
    for kind in KINDS:
        assert any(u in active for u, k in world.user_kinds.items() if k == kind)

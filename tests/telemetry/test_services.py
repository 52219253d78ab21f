"""Rollups, retention, the COPY path, selectors, tasks and schedules, on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.utils import timezone

from telemetry import selectors, services, tasks
from telemetry.bulk import insert_samples, insert_samples_us
from telemetry.models import DemoIncident, DemoUser, RollupState, Sample, SampleRollup, Series

pytestmark = pytest.mark.django_db
HOUR = 3600.0
DAY = 86400.0


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def now() -> datetime:
    return hour_floor(timezone.now()) + timedelta(minutes=37)


def fill(name: str, start: float, end: float, step: float = 300.0, seed: int = 0):
    series = services.series_ensure(name=name)
    ts = np.arange(start, end, step)
    values = np.random.default_rng(seed).gamma(2.0, 5.0, ts.size)
    insert_samples(np.full(ts.size, series.pk), ts, values)
    return series, ts, values


def test_copy_path_round_trips_microseconds_and_values_and_is_idempotent(postgres):
    series = services.series_ensure(name="precise")
    ts_us = np.array([1_700_000_000_123_456, 1_700_000_001_000_001, 946_684_799_999_999])
    values = np.array([0.1, -1e-300, 12345.678])
    assert insert_samples_us(np.full(3, series.pk), ts_us, values) == 3
    assert insert_samples_us(np.full(3, series.pk), ts_us, values + 1) == 0
    stored = list(Sample.objects.filter(series=series).order_by("ts").values_list("ts", "value"))
    expected = sorted(zip(ts_us.tolist(), values.tolist()))
    for (ts, value), (us, v) in zip(stored, expected):
        delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
        assert (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds == us
        assert value == v


def test_partly_overlapping_batch_writes_only_the_new_rows(postgres):
    """The direct COPY trips on the existing rows; the merge path keeps them and adds the rest."""
    series = services.series_ensure(name="overlap")
    ts_us = np.arange(20, dtype=np.int64) * 60_000_000 + 1_700_000_000_000_000
    assert insert_samples_us(np.full(10, series.pk), ts_us[:10], np.zeros(10)) == 10
    assert insert_samples_us(np.full(20, series.pk), ts_us, np.ones(20)) == 10
    values = list(
        Sample.objects.filter(series=series).order_by("ts").values_list("value", flat=True)
    )
    assert values == [0.0] * 10 + [1.0] * 10


def test_rollups_equal_hourly_aggregates_and_skip_the_open_hour(now):
    end = now.timestamp()
    series, ts, values = fill("load", end - 2 * DAY, end, step=60)
    counts = services.rollups_update(now=now)
    closed = hour_floor(now).timestamp()
    rollups = list(SampleRollup.objects.filter(series=series).order_by("bucket"))
    hours = np.unique(np.floor(ts[ts < closed] / HOUR))
    assert counts["rollups"] >= len(rollups) == hours.size
    assert rollups[-1].bucket.timestamp() < closed  # the current hour is still filling
    for rollup in (rollups[0], rollups[17], rollups[-1]):
        inside = (ts >= rollup.bucket.timestamp()) & (ts < rollup.bucket.timestamp() + HOUR)
        assert rollup.count == inside.sum()
        assert rollup.mean == pytest.approx(values[inside].mean())
        assert (rollup.min, rollup.max) == (values[inside].min(), values[inside].max())
    assert services.rollups_update(now=now)["rollups"] == 0  # nothing new: nothing written


def test_rollups_work_in_bounded_runs_and_resume(now):
    end = now.timestamp()
    series, ts, _ = fill("long", end - 5 * DAY, end, step=600)
    first = services.rollups_update(now=now, window_hours=24, max_windows=2)
    assert first["windows"] == 2 and first["pending"] > 0
    rest = services.rollups_update(now=now, window_hours=24, max_windows=30)
    assert rest["pending"] == 0
    hours = np.unique(np.floor(ts[ts < hour_floor(now).timestamp()] / HOUR))
    assert SampleRollup.objects.filter(series=series).count() == hours.size


def test_late_sample_marks_its_hour_stale_and_the_next_run_fixes_it(now, client_with_role):
    end = now.timestamp()
    series, _ts, _ = fill("late", end - DAY, end, step=300)
    services.rollups_update(now=now)
    old_hour = hour_floor(now - timedelta(hours=5))
    rollup = SampleRollup.objects.get(series=series, bucket=old_hour)
    late_ts = old_hour.timestamp() + 1.5  # not on the 5-minute grid: a new sample
    result = services.samples_ingest(rows=[{"series": "late", "ts": late_ts, "value": 1e6}])
    assert result.written == 1
    assert RollupState.objects.get().dirty_from.timestamp() == pytest.approx(late_ts)
    services.rollups_update(now=now)
    fixed = SampleRollup.objects.get(series=series, bucket=old_hour)
    assert fixed.count == rollup.count + 1 and fixed.max == 1e6
    assert RollupState.objects.get().dirty_from is None


def test_retention_deletes_only_rolled_up_old_hours_and_reads_stay_the_same(now, settings):
    settings.PHASE3_RAW_RETENTION_DAYS = 3
    end = now.timestamp()
    series, ts, _values = fill("kept", end - 6 * DAY, end, step=300)
    start, stop = datetime.fromtimestamp(ts[0], UTC), now
    before = selectors.series_points(series.pk, start=start, end=stop, step_seconds=DAY)

    assert services.samples_enforce_retention(now=now)["deleted"] == 0  # nothing rolled up yet
    services.rollups_update(now=now)
    counts = services.samples_enforce_retention(now=now, batch_size=100)
    cutoff = hour_floor(now - timedelta(days=3)).timestamp()
    assert counts["deleted"] >= (ts < cutoff).sum() and counts["batches"] > 1
    assert not Sample.objects.filter(ts__lt=datetime.fromtimestamp(cutoff, UTC)).exists()
    assert Sample.objects.filter(series=series).count() == (ts >= cutoff).sum()

    after = selectors.series_points(series.pk, start=start, end=stop, step_seconds=DAY)
    assert after.source == "rollup+raw"
    np.testing.assert_array_equal(after.ts, before.ts)
    np.testing.assert_allclose(after.values, before.values, rtol=1e-12)
    assert services.samples_enforce_retention(now=now)["deleted"] == 0


@pytest.mark.parametrize("agg", ["count", "sum", "max"])
def test_a_window_ending_mid_hour_in_the_rolled_up_past_stops_at_its_end(now, agg):
    """step=1h with end at 10:30 a day ago answered the whole 10:00 hour from its rollup:
    30 minutes past `end` were counted, while step=30m (raw) stopped at 10:30."""
    end = now.timestamp()
    series, ts, values = fill("midhour", end - 3 * DAY, end, step=60)
    services.rollups_update(now=now)
    start = datetime.fromtimestamp(hour_floor(now).timestamp() - 2 * DAY, UTC)
    stop = start + timedelta(hours=20, minutes=30)
    points = selectors.series_points(series.pk, start=start, end=stop, step_seconds=HOUR, agg=agg)
    assert points.source.startswith("rollup")
    inside = (ts >= start.timestamp()) & (ts < stop.timestamp())
    expected = selectors.resample(
        ts[inside], values[inside], step_seconds=HOUR, agg=agg, origin=start.timestamp()
    )
    np.testing.assert_array_equal(points.ts, expected[0])
    np.testing.assert_allclose(points.values, expected[1], rtol=1e-12)


def test_past_the_raw_retention_a_mid_hour_end_keeps_its_last_hour_whole(now, settings):
    """Its raw samples are gone: the last hour comes from its rollup rather than vanishing."""
    settings.PHASE3_RAW_RETENTION_DAYS = 1
    end = now.timestamp()
    series, _, _ = fill("midhour.old", end - 3 * DAY, end, step=60)
    services.rollups_update(now=now)
    services.samples_enforce_retention(now=now)
    start = datetime.fromtimestamp(hour_floor(now).timestamp() - 2 * DAY, UTC)
    stop = start + timedelta(hours=5, minutes=30)
    points = selectors.series_points(
        series.pk, start=start, end=stop, step_seconds=HOUR, agg="count"
    )
    assert points.values.tolist() == [60.0] * 6


def test_retention_keeps_stale_hours_until_they_are_rolled_up_again(now, settings):
    settings.PHASE3_RAW_RETENTION_DAYS = 1
    end = now.timestamp()
    series, _ts, _ = fill("stale", end - 3 * DAY, end, step=900)
    services.rollups_update(now=now)
    RollupState.objects.update(dirty_from=now - timedelta(days=2))  # as if late data arrived
    services.samples_enforce_retention(now=now)
    remaining = Sample.objects.filter(series=series).order_by("ts").first()
    assert remaining.ts <= now - timedelta(days=2)


def test_ingest_refuses_samples_older_than_retention(settings):
    settings.PHASE3_RAW_RETENTION_DAYS = 2
    from telemetry.validation import BatchInvalid

    old = (timezone.now() - timedelta(days=3)).timestamp()
    with pytest.raises(BatchInvalid) as caught:
        services.samples_ingest(rows=[{"series": "x", "ts": old, "value": 1.0}])
    assert "retention" in caught.value.errors["samples"]["0"]["ts"][0]


def test_selectors_return_numpy(now):
    end = now.timestamp()
    series, ts, values = fill("np", end - DAY, end, step=600)
    got_ts, got_values = selectors.series_values(series.pk)
    assert got_ts.dtype == np.float64 and got_values.dtype == np.float64
    np.testing.assert_array_equal(got_ts, ts)
    np.testing.assert_allclose(got_values, values)
    start = datetime.fromtimestamp(ts[0], UTC)
    r_ts, r_values = selectors.series_values_resampled(series.pk, start, now, 3600, "max")
    assert (isinstance(r_values, np.ndarray) and r_ts.size == 24) or r_ts.size == 25
    inside = (ts >= r_ts[3]) & (ts < r_ts[3] + HOUR)
    assert r_values[3] == values[inside].max()
    last = selectors.series_latest(series.pk)
    assert last == (ts[-1], pytest.approx(values[-1]))


def test_tasks_return_counts_and_schedules_are_well_formed(now):
    from phase3.celery import app
    from phase3.scheduling import _validate
    from telemetry.schedules import SCHEDULES

    fill("task", now.timestamp() - DAY, now.timestamp())
    counts = tasks.update_rollups()
    assert counts["rollups"] > 0 and set(counts) >= {"windows", "hours", "pending"}
    assert set(tasks.enforce_retention()) == {"deleted", "series", "batches"}
    for entry in SCHEDULES:
        _validate(entry)
        assert entry["task"] in app.tasks


def test_overview_section_reports_rollup_lag(now):
    fill("ov", now.timestamp() - DAY, now.timestamp())
    section = selectors.overview_section()
    assert section["series"] == Series.objects.count() and section["rollups"]["lag_hours"] is None
    services.rollups_update(now=timezone.now())
    assert selectors.overview_section()["rollups"]["lag_hours"] == 0


def test_overview_section_says_what_changed_in_the_last_day(now):
    before = selectors.overview_section()["changes_24h"]
    services.change_record(title="checkout 1.4.2", at=timezone.now() - timedelta(hours=2))
    services.change_record(title="old", at=timezone.now() - timedelta(days=2))
    section = selectors.overview_section()
    assert section["changes_24h"] == before + 1
    assert section["latest_changes"][0]["title"] == "checkout 1.4.2"


def test_demo_world_in_the_database(demo_world):
    """The seeded demo holds ground truth the systems are measured against."""
    kinds = set(DemoUser.objects.values_list("kind", flat=True))
    assert {"explorer", "optimizer", "achiever", "socializer"} <= kinds
    incidents = list(DemoIncident.objects.all())
    assert sum(incident.effect_series.exists() for incident in incidents) >= 3
    for incident in incidents:
        assert incident.start < incident.end
        cause = selectors.series_values(incident.cause_series_id, incident.start, incident.end)
        assert cause[0].size > 0
    series = selectors.series_get("http.requests.rate")
    assert isinstance(series, Series)
    frame = selectors.events_frame(names=["page_view"], with_properties=False)
    assert frame["ts"].dtype == np.float64 and set(frame["name"]) == {"page_view"}


def test_commands_report_counts_and_refuse_bad_arguments(now):
    from io import StringIO

    from django.core.management import CommandError, call_command

    fill("cmd", now.timestamp() - DAY, now.timestamp())
    out = StringIO()
    call_command("rollup_samples", "--until-done", stdout=out)
    assert "0 hours pending" in out.getvalue()
    assert SampleRollup.objects.filter(series__name="cmd").exists()
    out = StringIO()
    call_command("enforce_retention", stdout=out)
    assert "Deleted 0 raw samples" in out.getvalue()
    for command, flag in (
        ("rollup_samples", "--max-windows"),
        ("enforce_retention", "--batch-size"),
    ):
        with pytest.raises(CommandError, match="at least 1"):
            call_command(command, flag, "0")


# --- labels: an empty value is no label (Prometheus) ----------------------------------------


def test_an_empty_label_value_names_the_same_series_as_no_label():
    """{"env": ""} made a series of its own beside the one without env."""
    plain = services.series_ensure(name="test.empty", labels={"host": "a"})
    assert services.series_ensure(name="test.empty", labels={"host": "a", "env": ""}) == plain
    assert selectors.series_get("test.empty", {"env": "", "host": "a"}) == plain
    ids, created = services.series_ensure_many(series=[("test.empty", {"host": "a", "k": ""}, "")])
    assert ids.tolist() == [plain.pk] and created == 0
    fresh = services.series_ensure(name="test.empty.new", labels={"env": ""})
    assert fresh.labels == {} and fresh.labels_key == ""
    assert Series.objects.filter(name__startswith="test.empty").count() == 2


def test_listing_by_an_empty_label_value_selects_the_series_without_that_label():
    services.series_ensure(name="test.sel", labels={"env": "prod"})
    bare = services.series_ensure(name="test.sel", labels={"host": "a"})
    assert list(selectors.series_list(name="test.sel", labels={"env": ""})) == [bare]
    assert list(selectors.series_list(name="test.sel", labels={"env": "", "host": "a"})) == [bare]


def _migration():
    import importlib

    return importlib.import_module("telemetry.migrations.0003_empty_label_values")


def test_series_stored_with_an_empty_label_value_take_their_normalised_key():
    """Series written before the rule keep their history and are found by the new lookups;
    one whose normalised twin exists is left alone (not merged) and lookups find the twin."""
    from django.apps import apps

    def legacy(name: str, labels: dict) -> Series:
        series = services.series_ensure(name=name, labels={"host": "a"})
        key = ",".join(f"{k}={labels[k]}" for k in sorted(labels))  # the old labels_key
        Series.objects.filter(pk=series.pk).update(labels=labels, labels_key=key)
        return series

    alone = legacy("test.legacy", {"env": "", "host": "a"})
    twin = legacy("test.twin", {"env": "", "host": "a"})
    normal_twin = services.series_ensure(name="test.twin", labels={"host": "a"})
    assert selectors.series_get("test.legacy", {"host": "a"}) is None  # lost before
    _migration().normalise_empty_label_values(apps, None)
    assert selectors.series_get("test.legacy", {"host": "a", "env": ""}) == alone
    assert Series.objects.get(pk=alone.pk).labels == {"host": "a"}
    assert Series.objects.get(pk=twin.pk).labels_key == "env=,host=a"
    assert selectors.series_get("test.twin", {"host": "a", "env": ""}) == normal_twin
    listed = selectors.series_list(name="test.twin", labels={"env": "", "host": "a"})
    assert set(listed) == {twin, normal_twin}  # the leftover still lacks env (it is empty)


# --- reads past the raw retention -----------------------------------------------------------


@pytest.mark.parametrize("hours_back", [0, 1, 2])  # the 2-hour and 90-minute grids' phases
@pytest.mark.parametrize("step", [None, 300.0, 5400.0])
def test_a_raw_or_fine_read_past_the_raw_retention_gets_the_rollups_there(
    now, settings, monkeypatch, step, hours_back
):
    """A raw read (or a 5-minute step) older than the raw retention was a silent gap: the
    part before raw_from now comes from the hourly rollups, and the answer says so."""
    settings.PHASE3_RAW_RETENTION_DAYS = 3
    shift = timedelta(hours=hours_back)
    clock = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: clock() - shift)
    now -= shift
    end = now.timestamp()
    series, ts, values = fill("past.retention", end - 6 * DAY, end, step=300)
    services.rollups_update(now=now)
    services.samples_enforce_retention(now=now)
    cutoff = hour_floor(now - timedelta(days=3))
    start = datetime.fromtimestamp(ts[0] + 600, UTC)  # mid-hour: the first hour stays whole
    points = selectors.series_points(series.pk, start=start, end=now, step_seconds=step)

    assert points.raw_from == cutoff and points.source == "rollup+raw"
    coarse = 3600.0 if step is None or step < HOUR else 7200.0
    assert points.rollup_step == coarse
    old = points.ts < cutoff.timestamp()
    kept = ts < cutoff.timestamp()
    expected = selectors.resample(ts[kept], values[kept], step_seconds=coarse, origin=0.0)
    np.testing.assert_array_equal(points.ts[old], expected[0])
    np.testing.assert_allclose(points.values[old], expected[1], rtol=1e-12)
    # the step's grid resumes at its first boundary from raw_from on; a 90-minute grid may
    # leave a short bucket at raw_from for the samples before it
    seam = cutoff.timestamp() if step is None else np.ceil(cutoff.timestamp() / step) * step
    if seam > cutoff.timestamp():
        assert points.ts[old.sum()] == cutoff.timestamp()
        between = (ts >= cutoff.timestamp()) & (ts < seam)
        assert points.values[old.sum()] == pytest.approx(values[between].mean())
        old[old.sum()] = True
    recent = ts >= seam
    if step is None:
        np.testing.assert_array_equal(points.ts[~old], ts[recent])
        np.testing.assert_allclose(points.values[~old], values[recent])
    else:
        grid = np.floor(start.timestamp() / step) * step
        buckets = np.floor((ts[recent] - grid) / step) * step + grid
        assert points.ts[~old].tolist() == sorted(set(buckets.tolist()))
        last = buckets == points.ts[-1]
        assert points.values[-1] == pytest.approx(values[recent][last].mean())
    # the engines' grid read keeps its one step
    grid_ts, _ = selectors.series_values_resampled(series.pk, start, now, 300.0)
    assert grid_ts.min() >= cutoff.timestamp()


def test_a_read_inside_the_raw_retention_says_from_when_raw_samples_are_kept(now, settings):
    settings.PHASE3_RAW_RETENTION_DAYS = 3
    end = now.timestamp()
    series, ts, values = fill("inside.retention", end - DAY, end, step=300)
    services.rollups_update(now=now)
    start = hour_floor(now) - timedelta(hours=5, minutes=55)  # mid-hour, on the 5-minute grid
    points = selectors.series_points(series.pk, start=start, end=now, step_seconds=300.0)
    assert points.source == "raw" and points.rollup_step is None
    assert points.raw_from == hour_floor(now - timedelta(days=3))
    assert points.ts[0] == start.timestamp()  # no bucket before start (the hour's start)
    inside = ts >= start.timestamp()
    np.testing.assert_allclose(points.values, values[inside])

"""Services against the database: forecasts, their backtests and insights, written atomically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import numpy as np
import pytest
from django.utils import timezone

from forecasting import selectors, services, tasks
from forecasting.catalog import DEFAULT_TARGETS
from forecasting.models import (
    HORIZONS,
    BacktestResult,
    BusinessInsight,
    Forecast,
    ForecastPoint,
    ForecastTarget,
)
from phase3.models import JobRun
from telemetry import services as telemetry_services
from tests.forecasting.factories import (
    DAY,
    HOUR,
    ForecastTargetFactory,
    events_growing,
    hour_end,
    hourly_values,
    series_with_values,
)
from tests.locking import OtherConnection

pytestmark = pytest.mark.django_db


def series_target(values=None, *, days: int = 30, **kwargs) -> ForecastTarget:
    values = hourly_values(days) if values is None else values
    series = series_with_values("test.metric", values)
    return ForecastTargetFactory(series=series, **kwargs)


def test_forecast_is_stored_with_points_backtests_and_accuracy():
    target = series_target()
    outcome = services.forecast_compute(target_id=target.pk, horizon_days=7)
    forecast = outcome.forecast
    assert forecast.is_current and forecast.horizon_group == "short"
    assert forecast.step_seconds == HOUR  # 7 days of hourly data stay hourly
    points = list(forecast.points.order_by("ts"))
    assert len(points) == outcome.points == 7 * 24
    assert points[0].ts > forecast.history_end
    assert all(p.lower95 <= p.lower80 <= p.yhat <= p.upper80 <= p.upper95 for p in points)
    backtests = list(forecast.backtests.all())
    assert [b.rank for b in backtests] == list(range(1, len(backtests) + 1))
    chosen = [b for b in backtests if b.is_chosen]
    baseline = [b for b in backtests if b.is_baseline]
    assert len(chosen) == 1 and chosen[0].model_name == forecast.model_name
    assert len(baseline) == 1 and baseline[0].mase == pytest.approx(forecast.baseline_mase)
    # a trending, seasonal series: the chosen model must have beaten the seasonal naive
    assert forecast.beats_baseline
    assert 0.5 <= forecast.backtest_coverage80 <= 1.0


def test_long_horizons_are_forecast_on_daily_aggregates():
    target = series_target(days=60)
    forecast = services.forecast_compute(target_id=target.pk, horizon_days=90).forecast
    assert forecast.step_seconds == DAY
    assert forecast.points.count() == 90
    assert forecast.horizon_group == "long"


def test_recomputing_the_same_history_replaces_instead_of_adding():
    target = series_target()
    first = services.forecast_compute(target_id=target.pk, horizon_days=7).forecast
    second = services.forecast_compute(target_id=target.pk, horizon_days=7).forecast
    assert Forecast.objects.filter(target=target, horizon_days=7).count() == 1
    assert not Forecast.objects.filter(pk=first.pk).exists()
    assert ForecastPoint.objects.filter(forecast__target=target).count() == 7 * 24
    assert second.is_current


def test_new_data_makes_a_new_current_forecast_and_keeps_the_old_one():
    target = series_target()
    old = services.forecast_compute(target_id=target.pk, horizon_days=7).forecast
    later = hour_end() + HOUR
    from telemetry.bulk import insert_samples

    insert_samples([target.series_id], [later], [200.0])
    new = services.forecast_compute(
        target_id=target.pk, horizon_days=7, end=timezone.now() + timedelta(hours=2)
    ).forecast
    old.refresh_from_db()
    assert new.history_end > old.history_end
    assert not old.is_current and new.is_current
    assert list(selectors.forecasts_current(horizon_days=7)) == [new]


def test_a_failed_write_leaves_the_previous_forecast_untouched():
    target = series_target()
    old = services.forecast_compute(target_id=target.pk, horizon_days=7).forecast
    with mock.patch.object(
        BacktestResult.objects, "bulk_create", side_effect=RuntimeError("disk full")
    ):
        with pytest.raises(RuntimeError):
            services.forecast_compute(target_id=target.pk, horizon_days=7)
    old.refresh_from_db()
    assert old.is_current
    assert Forecast.objects.filter(target=target).count() == 1
    assert ForecastPoint.objects.filter(forecast=old).count() == 7 * 24


def test_threshold_crossing_date_follows_the_trend_and_the_limit():
    # utilisation climbing 1 point a day from 50%: a 70% limit is near, 500% never comes
    values = hourly_values(30, level=0.5, slope_per_day=0.01, noise=0.005, amplitude=0.02)
    target = series_target(values, threshold=0.7, prediction_type="resource_usage")
    forecast = services.forecast_compute(target_id=target.pk, horizon_days=30).forecast
    crossing = BusinessInsight.objects.get(
        target=target, kind=BusinessInsight.Kind.THRESHOLD_CROSSING, is_current=True
    )
    assert crossing.forecast_id == forecast.pk and crossing.threshold == 0.7
    assert forecast.history_end < crossing.expected_at
    assert crossing.expected_at <= forecast.history_end + timedelta(days=30)
    assert crossing.earliest_at <= crossing.expected_at
    assert crossing.latest_at is None or crossing.expected_at <= crossing.latest_at
    # the linear trend reaches 0.7 about 20 days after the start of history (day 30 -> 0.8)
    days_to_limit = (crossing.expected_at - forecast.history_end) / timedelta(days=1)
    assert days_to_limit < 5

    target.threshold = 5.0
    target.save()
    services.forecast_compute(target_id=target.pk, horizon_days=30)
    never = BusinessInsight.objects.get(
        target=target, kind=BusinessInsight.Kind.THRESHOLD_CROSSING, is_current=True
    )
    assert never.expected_at is None and never.threshold == 5.0


def test_a_cleared_threshold_leaves_no_crossing_standing_after_the_next_forecast():
    # The old crossing was retired only when a new one replaced it: with the threshold
    # cleared, "to rise above 0.7 on ..." stayed current for ever.
    values = hourly_values(30, level=0.5, slope_per_day=0.01, noise=0.005, amplitude=0.02)
    target = series_target(values, threshold=0.7, prediction_type="resource_usage")
    services.forecast_compute(target_id=target.pk, horizon_days=30)
    ForecastTarget.objects.filter(pk=target.pk).update(threshold=None)
    services.forecast_compute(target_id=target.pk, horizon_days=30)
    crossings = BusinessInsight.objects.filter(target=target, kind="threshold_crossing")
    assert crossings.count() == 1 and not crossings.filter(is_current=True).exists()


def _operator_edits_during_the_fit(monkeypatch, target: ForecastTarget, **changes) -> None:
    """Make the operator's edit land while the model is being fitted (after the target load)."""
    fit = services.forecast_over

    def fit_while_the_operator_edits(*args, **kwargs):
        ForecastTarget.objects.filter(pk=target.pk).update(**changes)
        return fit(*args, **kwargs)

    monkeypatch.setattr(services, "forecast_over", fit_while_the_operator_edits)


def test_a_threshold_changed_during_the_fit_is_the_one_the_crossing_uses(monkeypatch):
    # The crossing was computed against the threshold loaded before a fit of minutes.
    values = hourly_values(30, level=0.5, slope_per_day=0.01, noise=0.005, amplitude=0.02)
    target = series_target(values, threshold=0.7, prediction_type="resource_usage")
    _operator_edits_during_the_fit(monkeypatch, target, threshold=5.0)
    services.forecast_compute(target_id=target.pk, horizon_days=30)
    crossing = BusinessInsight.objects.get(
        target=target, kind=BusinessInsight.Kind.THRESHOLD_CROSSING, is_current=True
    )
    assert crossing.threshold == 5.0 and crossing.expected_at is None


def test_a_target_repointed_during_the_fit_does_not_store_the_old_series_forecast(monkeypatch):
    target = series_target()
    other = series_with_values("test.other", hourly_values(30, level=10_000.0))
    _operator_edits_during_the_fit(monkeypatch, target, series=other)
    with pytest.raises(services.ForecastUnavailable, match="changed"):
        services.forecast_compute(target_id=target.pk, horizon_days=7)
    assert not Forecast.objects.filter(target=target).exists()


def test_a_target_switched_off_during_the_fit_is_skipped_and_keeps_its_forecast(monkeypatch):
    target = series_target()
    old = services.forecast_compute(target_id=target.pk, horizon_days=7).forecast
    _operator_edits_during_the_fit(monkeypatch, target, enabled=False)
    counts = services.forecast_recompute(target_id=target.pk, horizon_days=7)
    assert counts["skipped"] == 1 and "disabled" in counts["reason"]
    assert list(Forecast.objects.filter(target=target)) == [old]


@pytest.mark.django_db(transaction=True)
def test_horizons_stored_at_once_write_one_growth_insight_per_history(postgres, monkeypatch):
    # Growth and trend insights are per target; the check "already written for this history?"
    # and the insert of two horizons' tasks interleaved, and both inserted them.
    target = series_target()
    thread = OtherConnection(
        lambda: services.forecast_compute(target_id=target.pk, horizon_days=30)
    )
    # This task has checked for the history's insights and is about to insert them.
    thread.start_at(monkeypatch, BusinessInsight.objects, "bulk_create")
    services.forecast_compute(target_id=target.pk, horizon_days=7)
    thread.join()
    assert isinstance(thread.outcome[0], services.ForecastOutcome), thread.outcome
    growth = BusinessInsight.objects.filter(target=target, kind=BusinessInsight.Kind.GROWTH)
    assert growth.count() == 1 and growth.get().is_current


def test_growth_insight_has_the_sign_of_the_trend():
    up = series_target(hourly_values(30, slope_per_day=2.0), name="up")
    down_values = hourly_values(30, level=300, slope_per_day=-2.0)
    down = ForecastTargetFactory(series=series_with_values("test.down", down_values), name="dn")
    for target in (up, down):
        services.forecast_compute(target_id=target.pk, horizon_days=7)
    growth = {
        i.target_id: i
        for i in BusinessInsight.objects.filter(kind=BusinessInsight.Kind.GROWTH, is_current=True)
    }
    assert growth[up.pk].lower > 0 and growth[up.pk].value > 0
    assert growth[down.pk].upper < 0 and growth[down.pk].value < 0
    assert growth[up.pk].confidence > 0.95


def test_history_reaches_past_the_raw_retention_through_hourly_rollups(settings):
    # raw samples are kept PHASE3_RAW_RETENTION_DAYS; the long horizons need the rollups
    settings.PHASE3_RAW_RETENTION_DAYS = 30
    stored_days = 120
    end = hour_end()
    series = series_with_values("fc.rollup", hourly_values(stored_days), end=end)
    now = datetime.fromtimestamp(end + HOUR, tz=UTC)
    telemetry_services.rollups_update(now=now, max_windows=500)
    telemetry_services.samples_enforce_retention(now=now)
    target = ForecastTargetFactory(series=series)
    ts, values = services.target_history(target, end=now)
    assert (ts.max() - ts.min()) / DAY > stored_days - 1
    np.testing.assert_allclose(values, hourly_values(stored_days))  # hourly means, as stored
    forecast = services.forecast_compute(target_id=target.pk, horizon_days=180, end=now).forecast
    assert forecast.history_points >= stored_days - 1


def test_the_hour_in_progress_is_not_part_of_the_history():
    hour = hour_end() - HOUR
    minutes = np.full(24 * 12 + 4, 50.0)  # a day of 5-minute samples, then 00-15 of an hour
    series = series_with_values("fc.minutes", minutes, step=300.0, end=hour + HOUR + 15 * 60)
    target = ForecastTargetFactory(series=series)
    ts, _ = services.target_history(target, end=datetime.fromtimestamp(hour + HOUR + 1200, tz=UTC))
    assert ts.max() == hour  # the last whole hour


def test_events_targets_count_active_users_from_events():
    end = hour_end()
    events_growing(21, first_day_users=10, growth_per_day=2, end=end)
    target = ForecastTarget.objects.create(
        name="dau",
        prediction_type="user_growth",
        source=ForecastTarget.Source.EVENTS,
        event_metric="active_users",
    )
    _, values = services.target_history(target)
    np.testing.assert_allclose(np.diff(values), 2.0)  # what the events were built with
    forecast = services.forecast_compute(target_id=target.pk, horizon_days=7).forecast
    assert forecast.step_seconds == DAY
    assert forecast.points.count() == 7
    assert forecast.points.order_by("ts").last().yhat > values[-1]


def test_too_little_history_is_a_skip_and_writes_nothing():
    target = series_target(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(services.ForecastUnavailable):
        services.forecast_compute(target_id=target.pk, horizon_days=7)
    counts = services.forecast_recompute(target_id=target.pk, horizon_days=7)
    assert counts["skipped"] == 1 and "need at least" in counts["reason"]
    assert not Forecast.objects.exists() and not BusinessInsight.objects.exists()


def test_bad_horizon_is_refused():
    target = series_target()
    with pytest.raises(ValueError, match="horizon_days"):
        services.forecast_compute(target_id=target.pk, horizon_days=8)


def test_targets_sync_adds_missing_defaults_and_keeps_operator_edits():
    series_with_values("system.cpu.utilization", hourly_values(2))
    first = services.targets_sync()
    cpu = ForecastTarget.objects.get(name="cpu utilization")
    # events targets always exist; series targets only when their series does
    event_specs = [s for s in DEFAULT_TARGETS if s.source == "events"]
    assert first["created"] == len(event_specs) + 1
    assert not ForecastTarget.objects.filter(name="request rate").exists()
    cpu.threshold = 0.5
    cpu.save()
    assert services.targets_sync()["created"] == 0
    cpu.refresh_from_db()
    assert cpu.threshold == 0.5


def test_targets_sync_takes_a_target_another_plan_created_meanwhile(monkeypatch):
    """`make run` starts both plans' schedules at once; the second read no targets, then
    failed on the first's rows (IntegrityError on the name) instead of planning."""
    first = services.targets_sync()
    assert first["created"] > 0
    real = ForecastTarget.objects.values_list
    monkeypatch.setattr(
        ForecastTarget.objects,
        "values_list",
        lambda *a, **k: real(*a, **k).none() if a == ("name",) else real(*a, **k),
    )
    assert services.targets_sync() == {"created": 0, "targets": first["targets"]}


def test_plan_filters_by_group_type_and_enabled():
    a = series_target(prediction_type="traffic")
    ForecastTargetFactory(series=a.series, prediction_type="traffic", enabled=False)
    pairs = services.forecasts_plan(horizon_groups=["long"], prediction_type="traffic")
    assert pairs == [(a.pk, h) for h in sorted(HORIZONS) if HORIZONS[h] == "long"]
    with pytest.raises(ValueError, match="horizon groups"):
        services.forecasts_plan(horizon_groups=["someday"])
    with pytest.raises(ValueError, match="prediction type"):
        services.forecasts_plan(prediction_type="weather")


def test_planner_task_fans_out_one_task_per_target_and_horizon(
    celery_eager, django_capture_on_commit_callbacks
):
    a = series_target(prediction_type="traffic")
    b = ForecastTargetFactory(
        series=series_with_values("test.other", hourly_values(30, seed=3)),
        prediction_type="traffic",
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.plan_forecasts.delay(prediction_type="traffic", horizons=[7])
    assert result.get() == {"queued": 2}
    assert set(Forecast.objects.values_list("target_id", flat=True)) == {a.pk, b.pk}
    runs = JobRun.objects.filter(task_name="forecasting.recompute_series", status="success")
    assert runs.count() == 2
    assert all(run.counts["points"] == 7 * 24 for run in runs)


def test_overview_figures_follow_the_stored_forecasts():
    empty = selectors.overview_section()
    assert empty["forecasts_current"] == 0 and empty["share_beating_seasonal_naive"] is None
    target = series_target(threshold=1e9)
    services.forecast_compute(target_id=target.pk, horizon_days=7)
    services.forecast_compute(target_id=target.pk, horizon_days=30)
    section = selectors.overview_section()
    current = list(Forecast.objects.filter(is_current=True))
    assert section["forecasts_current"] == len(current) == 2
    beating = sum(f.backtest_mase < f.baseline_mase for f in current) / len(current)
    assert section["share_beating_seasonal_naive"] == pytest.approx(beating)
    assert section["mean_backtest_mase"] == pytest.approx(
        np.mean([f.backtest_mase for f in current])
    )
    assert section["insights_current"]["threshold_crossing"] == 2
    assert section["threshold_crossings_expected"] == 0


def test_scaling_reads_the_forecast_of_a_series_as_arrays():
    target = series_target()
    forecast = services.forecast_compute(target_id=target.pk, horizon_days=7).forecast
    found = selectors.forecast_for_series(target.series_id)
    assert found == forecast
    arrays = selectors.forecast_arrays(found)
    assert arrays["ts"].size == 7 * 24
    assert np.all(np.diff(arrays["ts"]) == HOUR)
    assert np.all(arrays["lower80"] <= arrays["upper80"])
    assert selectors.forecast_for_series(target.series_id, horizon_days=30) is None


def test_schedules_name_registered_tasks():
    from celery import current_app

    from forecasting.schedules import SCHEDULES

    for entry in SCHEDULES:
        assert entry["task"] in current_app.tasks
        groups = entry["kwargs"]["horizon_groups"]
        pairs = services.forecasts_plan(horizon_groups=groups)  # the events targets exist
        assert pairs and {HORIZONS[h] for _, h in pairs} == set(groups)


def test_the_demo_world_is_forecast_end_to_end(demo_world):
    """On the foundation's demo telemetry every series target gets a calibrated forecast."""
    services.targets_sync()
    series_targets = ForecastTarget.objects.filter(source=ForecastTarget.Source.SERIES)
    assert series_targets.count() == sum(s.source == "series" for s in DEFAULT_TARGETS)
    counts = services.forecasts_recompute(horizons=[7])
    # 7 days of events make 6 whole days: too short for the daily user metrics, and said so
    event_targets = ForecastTarget.objects.filter(source=ForecastTarget.Source.EVENTS).count()
    assert counts["forecasts"] == series_targets.count()
    assert counts["skipped"] == event_targets
    assert all("need at least" in reason for reason in counts["reasons"])
    for forecast in Forecast.objects.filter(is_current=True):
        assert forecast.step_seconds == HOUR  # 5-minute samples, a week ahead: hourly
        assert forecast.points.count() == 7 * 24
        assert forecast.backtest_coverage80 is not None


def test_history_insights_are_written_once_per_history_not_once_per_horizon():
    target = series_target(hourly_values(30, slope_per_day=2.0))
    for horizon in (7, 30, 90):
        services.forecast_compute(target_id=target.pk, horizon_days=horizon)
    growth = BusinessInsight.objects.filter(target=target, kind=BusinessInsight.Kind.GROWTH)
    assert growth.count() == 1 and growth.get().is_current
    from telemetry.bulk import insert_samples

    insert_samples([target.series_id], [hour_end() + HOUR], [300.0])
    services.forecast_compute(
        target_id=target.pk, horizon_days=7, end=timezone.now() + timedelta(hours=2)
    )
    assert growth.count() == 2 and growth.filter(is_current=True).count() == 1

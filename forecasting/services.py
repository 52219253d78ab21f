"""The writers of the forecasting system: telemetry -> engine -> models, one transaction each.

Reading telemetry and running the engine happen before the transaction
opens, so a slow fit never holds database locks, and a failure anywhere
leaves the previous forecast in place: a forecast, its points, its backtest
table and its insights are written together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from forecasting.catalog import DEFAULT_TARGETS
from forecasting.engine import ForecastResult, forecast_over
from forecasting.engine.activity import activity_series
from forecasting.engine.calendar import DAY
from forecasting.engine.insights import threshold_crossing
from forecasting.insight_records import crossing_insight_build, history_insights_build
from forecasting.models import (
    HORIZONS,
    BacktestResult,
    BusinessInsight,
    Forecast,
    ForecastPoint,
    ForecastTarget,
    HorizonGroup,
    PredictionType,
)
from telemetry import selectors as telemetry

#: history read for a forecast; a year of daily points is what the 365-day horizon needs
MAX_HISTORY_DAYS = 400
#: grain a series target is read at (hourly rollups hold it beyond the raw retention)
HISTORY_STEP_SECONDS = 3600
#: Prophet earns its cost only on long horizons, where the series is daily and short
PROPHET_FROM_DAYS = 90


class ForecastUnavailable(ValueError):
    """The target cannot be forecast now (no data, too little history)."""


@dataclass(frozen=True)
class ForecastOutcome:
    forecast: Forecast
    points: int
    insights: int


def targets_sync() -> dict:
    """Create the default targets whose telemetry exists; never touch existing ones.

    A target an operator edited (threshold, switched off) or deleted and
    recreated is theirs: only names that do not exist yet are added. Two plans can run
    this at once (the short and the long horizons' schedules both fire when the product
    starts): `get_or_create` takes the other's row instead of failing on the name.
    """
    created = 0
    existing = set(ForecastTarget.objects.values_list("name", flat=True))
    for spec in DEFAULT_TARGETS:
        if spec.name in existing:
            continue
        series = None
        if spec.source == ForecastTarget.Source.SERIES:
            series = telemetry.series_get(spec.series_name, spec.series_labels)
            if series is None:
                continue
        _, made = ForecastTarget.objects.get_or_create(
            name=spec.name,
            defaults={
                "prediction_type": spec.prediction_type,
                "source": spec.source,
                "series": series,
                "event_metric": spec.event_metric,
                "threshold": spec.threshold,
                "threshold_direction": spec.threshold_direction,
            },
        )
        created += made
    return {"created": created, "targets": ForecastTarget.objects.count()}


# The fields of a target that a threshold-crossing insight answers.
CROSSING_INPUTS = frozenset({"threshold", "threshold_direction", "enabled"})


# The fields of a target that say what is forecast: a change makes every forecast a different
# number's.
SOURCE_INPUTS = frozenset({"source", "series", "event_metric"})


def target_forecasts_retire(*, target_id: int) -> dict:
    """Retire a target's current forecasts and insights (every horizon and kind).

    Called when an operator points the target at another series or event metric: the
    forecasts were of the old number, and ``forecast_for_series`` would otherwise hand the
    old series' forecast to capacity planning as the new one's until each horizon is
    recomputed (a day for the long ones). The rows stay as history, no longer current.
    """
    forecasts = Forecast.objects.filter(target_id=target_id, is_current=True).update(
        is_current=False
    )
    insights = BusinessInsight.objects.filter(target_id=target_id, is_current=True).update(
        is_current=False
    )
    return {"forecasts": forecasts, "insights": insights}


def target_edited(*, target_id: int, changed: Iterable[str]) -> dict:
    """Retire what an operator's edit of a target made stale; ``changed``: the fields edited."""
    changed = set(changed)
    if SOURCE_INPUTS & changed:
        return target_forecasts_retire(target_id=target_id)
    if CROSSING_INPUTS & changed:
        return {"forecasts": 0, "insights": crossing_insights_retire(target_id=target_id)}
    return {"forecasts": 0, "insights": 0}


def crossing_insights_retire(*, target_id: int) -> int:
    """Retire a target's current threshold-crossing insights (every horizon).

    Called when an operator changes the limit, its direction or switches the target off:
    the dates were computed for the old limit and would otherwise stand until the slowest
    horizon's next recompute (a day for the long ones). The next forecast of each horizon
    writes a crossing for the new limit, if there is one.
    """
    return BusinessInsight.objects.filter(
        target_id=target_id, kind=BusinessInsight.Kind.THRESHOLD_CROSSING, is_current=True
    ).update(is_current=False)


def target_history(
    target: ForecastTarget, *, end: datetime | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The target's history as (epoch seconds, values), at most ``MAX_HISTORY_DAYS`` long.

    A series is read as hourly means (bucket starts) through telemetry's ``series_points``,
    which takes the hours before the rollup horizon from the hourly rollups: raw samples are
    kept only ``PHASE3_RAW_RETENTION_DAYS`` (90 by default), and the 180 and 365-day
    horizons need the year the rollups hold. Every horizon is forecast at hourly grain or
    coarser (``engine.choose_step``), so nothing finer is lost. The hour in progress at
    ``end`` is left out: its mean covers only part of the hour.
    """
    end = end or timezone.now()
    start = end - timedelta(days=MAX_HISTORY_DAYS)
    if target.source == ForecastTarget.Source.SERIES:
        closed = np.floor(end.timestamp() / HISTORY_STEP_SECONDS) * HISTORY_STEP_SECONDS
        points = telemetry.series_points(
            target.series_id,
            start=start,
            end=telemetry.to_datetime(closed),
            step_seconds=HISTORY_STEP_SECONDS,
        )
        return points.ts, points.values
    frame = telemetry.events_frame(start=start, end=end, with_properties=False)
    if frame["ts"].size == 0:
        return np.empty(0), np.empty(0)
    activity = activity_series(
        frame["ts"],
        frame["user_id"],
        frame["session_id"],
        frame["name"],
        step=DAY,
        end=end.timestamp(),
    )
    return activity.timestamps, activity.metric(target.event_metric)


def _use_prophet(horizon_days: int) -> bool:
    return bool(getattr(settings, "FORECASTING_USE_PROPHET", True)) and (
        horizon_days >= PROPHET_FROM_DAYS
    )


def forecast_compute(
    *,
    target_id: int,
    horizon_days: int,
    include_prophet: bool | None = None,
    end: datetime | None = None,
) -> ForecastOutcome:
    """Forecast one target over one horizon and store it with its backtests and insights.

    Running it twice on the same history replaces the first result instead
    of adding a second one, so a retried task writes the same thing. A target
    switched off while its model was being fitted is skipped (``ForecastUnavailable``).
    """
    if horizon_days not in HORIZONS:
        raise ValueError(f"horizon_days must be one of {sorted(HORIZONS)}")
    target = ForecastTarget.objects.select_related("series").get(pk=target_id)
    ts, values = target_history(target, end=end)
    if ts.size == 0:
        raise ForecastUnavailable(f"{target.name}: no data")
    use_prophet = _use_prophet(horizon_days) if include_prophet is None else include_prophet
    try:
        result = forecast_over(ts, values, horizon_days * DAY, include_prophet=use_prophet)
    except ValueError as exc:
        raise ForecastUnavailable(f"{target.name}: {exc}") from exc
    history_insights = history_insights_build(target, ts, values)
    with transaction.atomic():
        # The fit above can take minutes without holding locks. The target row is locked and
        # read again here: tasks for the other horizons of this target wait for this one, so
        # the per-target growth/trend check-then-insert cannot run twice at once, and the
        # threshold and ``enabled`` used are the operator's current ones, not the fit's copy.
        # NO KEY UPDATE: rows pointing at the target (forecasts, insights) can still be added.
        locked = ForecastTarget.objects.select_for_update(no_key=True).filter(pk=target_id).first()
        if locked is None:
            raise ForecastTarget.DoesNotExist(f"target {target_id} was deleted during the fit")
        if not locked.enabled:
            raise ForecastUnavailable(f"{locked.name}: disabled during the fit")
        if any(
            getattr(locked, f) != getattr(target, f)
            for f in ("source", "series_id", "event_metric")
        ):
            raise ForecastUnavailable(f"{locked.name}: its series changed during the fit")
        return _store(locked, horizon_days, ts, result, history_insights)


def _store(
    target: ForecastTarget,
    horizon_days: int,
    ts: np.ndarray,
    result: ForecastResult,
    history_insights: list[BusinessInsight],
) -> ForecastOutcome:
    """Write one forecast; ``target`` must be the row locked by the caller's transaction."""
    history_end = telemetry.to_datetime(ts.max())
    Forecast.objects.filter(
        target=target, horizon_days=horizon_days, history_end=history_end
    ).delete()
    Forecast.objects.filter(target=target, horizon_days=horizon_days, is_current=True).update(
        is_current=False
    )
    chosen, baseline = result.chosen, result.baseline
    forecast = Forecast.objects.create(
        target=target,
        prediction_type=target.prediction_type,
        horizon_days=horizon_days,
        horizon_group=HORIZONS[horizon_days],
        model_name=result.model,
        step_seconds=result.step,
        seasonal_periods=list(result.periods),
        history_start=telemetry.to_datetime(ts.min()),
        history_end=history_end,
        history_points=result.history_points,
        backtest_mase=_finite(chosen.mase),
        backtest_smape=_finite(chosen.smape),
        backtest_coverage80=_finite(chosen.coverage80),
        backtest_coverage95=_finite(chosen.coverage95),
        baseline_model=baseline.model,
        baseline_mase=_finite(baseline.mase),
        backtest_horizon_steps=result.backtest_horizon,
        backtest_origins=result.backtest_origins,
    )
    points = ForecastPoint.objects.bulk_create(
        ForecastPoint(
            forecast=forecast,
            ts=telemetry.to_datetime(t),
            yhat=float(y),
            lower80=float(lo80),
            upper80=float(hi80),
            lower95=float(lo95),
            upper95=float(hi95),
        )
        for t, y, lo80, hi80, lo95, hi95 in zip(
            result.timestamps,
            result.yhat,
            result.lower80,
            result.upper80,
            result.lower95,
            result.upper95,
            strict=True,
        )
    )
    BacktestResult.objects.bulk_create(
        BacktestResult(
            forecast=forecast,
            model_name=score.model,
            mase=score.mase,
            smape=score.smape,
            is_chosen=score.model == result.model,
            is_baseline=score.model == baseline.model,
            rank=rank,
        )
        for rank, score in enumerate(result.scores, start=1)
        if np.isfinite(score.mase)
    )
    insights: list[BusinessInsight] = []
    # The horizon's old crossing is retired even when the threshold has been cleared since:
    # it answered a limit the operator no longer sets.
    BusinessInsight.objects.filter(
        target=target,
        kind=BusinessInsight.Kind.THRESHOLD_CROSSING,
        horizon_days=horizon_days,
        is_current=True,
    ).update(is_current=False)
    if target.threshold is not None:
        crossing = threshold_crossing(
            result.timestamps,
            result.yhat,
            result.lower80,
            result.upper80,
            target.threshold,
            target.threshold_direction,
        )
        insights.append(crossing_insight_build(target, forecast, crossing))
    # growth and trend change depend on the history only: the first horizon computed on a
    # new history writes them, the other horizons of the same run find them current
    stamp = history_end.isoformat()
    history_kinds = [BusinessInsight.Kind.GROWTH, BusinessInsight.Kind.TREND_CHANGE]
    current = BusinessInsight.objects.filter(target=target, kind__in=history_kinds, is_current=True)
    if not current.filter(details__history_end=stamp).exists():
        current.update(is_current=False)  # a trend change no longer found is retired too
        for insight in history_insights:
            insight.forecast = forecast
            insight.details["history_end"] = stamp
            insights.append(insight)
    BusinessInsight.objects.bulk_create(insights)
    return ForecastOutcome(forecast=forecast, points=len(points), insights=len(insights))


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def forecasts_plan(
    *,
    horizon_groups: Iterable[str] | None = None,
    prediction_type: str | None = None,
    horizons: Iterable[int] | None = None,
) -> list[tuple[int, int]]:
    """The (target id, horizon days) pairs to recompute, after adding missing default targets."""
    targets_sync()
    if prediction_type is not None and prediction_type not in PredictionType.values:
        raise ValueError(f"unknown prediction type {prediction_type!r}")
    chosen = set(HORIZONS) if horizons is None else set(horizons)
    unknown = chosen - set(HORIZONS)
    if unknown:
        raise ValueError(f"unknown horizons {sorted(unknown)}; use {sorted(HORIZONS)}")
    if horizon_groups is not None:
        groups = set(horizon_groups)
        if groups - set(HorizonGroup.values):
            raise ValueError(f"unknown horizon groups {sorted(groups - set(HorizonGroup.values))}")
        chosen = {h for h in chosen if HORIZONS[h] in groups}
    qs = ForecastTarget.objects.filter(enabled=True)
    if prediction_type:
        qs = qs.filter(prediction_type=prediction_type)
    ids = list(qs.order_by("id").values_list("id", flat=True))
    return [(target_id, h) for target_id in ids for h in sorted(chosen)]


def forecast_recompute(*, target_id: int, horizon_days: int) -> dict:
    """Counts for a task: one forecast, or a skip with its reason when data is too short."""
    try:
        outcome = forecast_compute(target_id=target_id, horizon_days=horizon_days)
    except ForecastUnavailable as exc:
        return {"skipped": 1, "reason": str(exc)}
    except ForecastTarget.DoesNotExist:
        return {"skipped": 1, "reason": f"target {target_id} no longer exists"}
    return {"forecasts": 1, "points": outcome.points, "insights": outcome.insights}


def forecasts_recompute(
    *, prediction_type: str | None = None, horizons: Iterable[int] | None = None
) -> dict:
    """Recompute in this process (the CLI face); the scheduler fans out over workers instead."""
    totals = {"forecasts": 0, "points": 0, "insights": 0, "skipped": 0}
    reasons = []
    for target_id, horizon in forecasts_plan(prediction_type=prediction_type, horizons=horizons):
        counts = forecast_recompute(target_id=target_id, horizon_days=horizon)
        for key in totals:
            totals[key] += counts.get(key, 0)
        if "reason" in counts:
            reasons.append(counts["reason"])
    return {**totals, "reasons": sorted(set(reasons))}

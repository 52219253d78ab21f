"""BusinessInsight rows built from the engine's answers (unsaved; services write them).

The wording of a summary and which engine figure lands in which column live
here, apart from the transaction logic in ``services``.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

import numpy as np

from forecasting.engine.insights import (
    Crossing,
    GrowthEstimate,
    TrendChange,
    detect_trend_change,
    growth_rate,
)
from forecasting.models import BusinessInsight, Forecast, ForecastTarget
from telemetry.selectors import to_datetime


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else to_datetime(epoch)


def _pct(rate: float) -> str:
    return f"{rate * 100:+.1f}%"


def growth_insight_build(target: ForecastTarget, growth: GrowthEstimate) -> BusinessInsight:
    if growth.relative:
        what = f"{_pct(growth.rate)} per {growth.per_days:g} days"
        band = f"{_pct(growth.lower)} to {_pct(growth.upper)}"
    else:
        what = f"{growth.rate:+.4g} per {growth.per_days:g} days"
        band = f"{growth.lower:+.4g} to {growth.upper:+.4g}"
    return BusinessInsight(
        target=target,
        prediction_type=target.prediction_type,
        kind=BusinessInsight.Kind.GROWTH,
        summary=(
            f"{target.name}: {what} ({band} at {growth.level:.0%}, "
            f"trend confidence {growth.confidence:.0%})"
        )[:300],
        value=growth.rate,
        lower=growth.lower,
        upper=growth.upper,
        confidence=growth.confidence,
        details={
            "per_days": growth.per_days,
            "relative": growth.relative,
            "level": growth.level,
            "days": growth.points,
        },
    )


def crossing_insight_build(
    target: ForecastTarget, forecast: Forecast, crossing: Crossing
) -> BusinessInsight:
    verb = "rise above" if crossing.direction == "above" else "fall below"
    if crossing.expected is not None:
        when = f"expected {_dt(crossing.expected):%Y-%m-%d %H:%M}"
    elif crossing.earliest is not None:
        when = f"possible from {_dt(crossing.earliest):%Y-%m-%d %H:%M} (upper 80% bound)"
    else:
        when = f"not expected within {forecast.horizon_days} days"
    return BusinessInsight(
        target=target,
        forecast=forecast,
        prediction_type=target.prediction_type,
        kind=BusinessInsight.Kind.THRESHOLD_CROSSING,
        horizon_days=forecast.horizon_days,
        summary=f"{target.name} to {verb} {crossing.threshold:g}: {when}"[:300],
        threshold=crossing.threshold,
        expected_at=_dt(crossing.expected),
        earliest_at=_dt(crossing.earliest),
        latest_at=_dt(crossing.latest),
        details={"direction": crossing.direction, "interval": 0.8},
    )


def trend_insight_build(target: ForecastTarget, change: TrendChange) -> BusinessInsight:
    return BusinessInsight(
        target=target,
        prediction_type=target.prediction_type,
        kind=BusinessInsight.Kind.TREND_CHANGE,
        summary=(
            f"{target.name}: trend changed around {_dt(change.at):%Y-%m-%d} "
            f"from {change.slope_before:+.4g}/day to {change.slope_after:+.4g}/day"
        )[:300],
        value=change.slope_after - change.slope_before,
        lower=change.slope_before,
        upper=change.slope_after,
        confidence=1.0 - change.p_value,
        expected_at=_dt(change.at),
        details={
            "slope_before_per_day": change.slope_before,
            "slope_after_per_day": change.slope_after,
            "p_value": change.p_value,
        },
    )


def history_insights_build(
    target: ForecastTarget, ts: np.ndarray, values: np.ndarray
) -> list[BusinessInsight]:
    """Growth and trend change read from the history (needs a few days of data)."""
    out: list[BusinessInsight] = []
    # fewer than 4 days: no growth figure is better than a wrong one
    with contextlib.suppress(ValueError):
        out.append(growth_insight_build(target, growth_rate(ts, values)))
    change = detect_trend_change(ts, values)
    if change is not None:
        out.append(trend_insight_build(target, change))
    return out

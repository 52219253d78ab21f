"""Reads of the forecasting system: the API, the admin, the scaling and insights systems.

``scaling`` reads ``forecast_for_series`` / ``forecast_arrays`` to size
capacity ahead of load; ``insights`` reads ``insights_current``. Everything
here is a read; nothing writes.
"""

from __future__ import annotations

import numpy as np
from django.db.models import Avg, Count, F, Max, Prefetch, Q, QuerySet
from django.utils import timezone

from forecasting.models import BacktestResult, BusinessInsight, Forecast, ForecastPoint


def forecast_queryset() -> QuerySet[Forecast]:
    return Forecast.objects.select_related("target", "target__series")


def forecasts_current(
    *, prediction_type: str | None = None, horizon_days: int | None = None, with_points: bool = True
) -> QuerySet[Forecast]:
    """The latest forecast of every target and horizon, optionally filtered."""
    qs = forecast_queryset().filter(is_current=True, target__enabled=True)
    if prediction_type:
        qs = qs.filter(prediction_type=prediction_type)
    if horizon_days:
        qs = qs.filter(horizon_days=horizon_days)
    if with_points:
        qs = qs.prefetch_related(Prefetch("points", queryset=ForecastPoint.objects.order_by("ts")))
    return qs.order_by("prediction_type", "target__name", "horizon_days")


def forecast_for_series(series_id: int, *, horizon_days: int = 7) -> Forecast | None:
    """The current forecast of a telemetry series (for capacity planning), if there is one.

    A switched-off target's forecasts are not served, as ``forecasts_current`` does not list
    them: the operator stopped trusting or maintaining them.
    """
    return (
        forecast_queryset()
        .filter(
            target__series_id=series_id,
            target__enabled=True,
            horizon_days=horizon_days,
            is_current=True,
        )
        .order_by("-created_at", "-pk")
        .first()
    )


def forecast_arrays(forecast: Forecast) -> dict[str, np.ndarray]:
    """A forecast's points as numpy arrays (epoch seconds and values), oldest first."""
    rows = list(
        forecast.points.order_by("ts").values_list(
            "ts", "yhat", "lower80", "upper80", "lower95", "upper95"
        )
    )
    names = ("ts", "yhat", "lower80", "upper80", "lower95", "upper95")
    if not rows:
        return {name: np.empty(0) for name in names}
    cols = list(zip(*rows, strict=True))
    out = {"ts": np.array([t.timestamp() for t in cols[0]], dtype=float)}
    for name, col in zip(names[1:], cols[1:], strict=True):
        out[name] = np.asarray(col, dtype=float)
    return out


def backtest_queryset() -> QuerySet[BacktestResult]:
    return BacktestResult.objects.select_related("forecast", "forecast__target")


def insight_queryset() -> QuerySet[BusinessInsight]:
    return BusinessInsight.objects.select_related("target", "forecast")


def insights_current(
    *, kind: str | None = None, prediction_type: str | None = None
) -> QuerySet[BusinessInsight]:
    """Insights that still stand (the latest of their kind for a target and horizon)."""
    qs = insight_queryset().filter(is_current=True)
    if kind:
        qs = qs.filter(kind=kind)
    if prediction_type:
        qs = qs.filter(prediction_type=prediction_type)
    return qs.order_by("-created_at")


def overview_section() -> dict:
    """Counts, accuracy against the seasonal naive and coverage of the current forecasts."""
    current = Forecast.objects.filter(is_current=True)
    stats = current.aggregate(
        n=Count("id"),
        mean_mase=Avg("backtest_mase"),
        mean_baseline=Avg("baseline_mase"),
        coverage80=Avg("backtest_coverage80"),
        coverage95=Avg("backtest_coverage95"),
        last=Max("created_at"),
        beating=Count("id", filter=Q(backtest_mase__lt=F("baseline_mase"))),
        compared=Count("id", filter=Q(backtest_mase__isnull=False, baseline_mase__isnull=False)),
    )
    by_type = dict(current.values_list("prediction_type").annotate(n=Count("id")).order_by())
    by_model = dict(current.values_list("model_name").annotate(n=Count("id")).order_by("-n")[:5])
    insights = BusinessInsight.objects.filter(is_current=True)
    insight_counts = dict(insights.values_list("kind").annotate(n=Count("id")).order_by())
    upcoming = insights.filter(
        kind=BusinessInsight.Kind.THRESHOLD_CROSSING, expected_at__gte=timezone.now()
    ).count()
    return {
        "forecasts_current": stats["n"],
        "forecasts_by_type": by_type,
        "top_models": by_model,
        "mean_backtest_mase": stats["mean_mase"],
        "mean_seasonal_naive_mase": stats["mean_baseline"],
        "share_beating_seasonal_naive": (
            stats["beating"] / stats["compared"] if stats["compared"] else None
        ),
        "mean_coverage80": stats["coverage80"],
        "mean_coverage95": stats["coverage95"],
        "last_computed_at": stats["last"],
        "insights_current": insight_counts,
        "threshold_crossings_expected": upcoming,
    }

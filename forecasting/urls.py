"""Routes of the forecasting system, mounted under /admin/api/phase3/ by phase3.urls."""

from django.urls import re_path

from telemetry.routers import OptionalSlashRouter

from .api import (
    BacktestResultViewSet,
    BusinessInsightViewSet,
    ForecastTargetViewSet,
    ForecastViewSet,
    PredictionsView,
    RecomputeView,
)

router = OptionalSlashRouter()
router.register("forecasting/forecasts", ForecastViewSet, basename="fc-forecast")
router.register("forecasting/backtests", BacktestResultViewSet, basename="fc-backtest")
router.register("forecasting/insights", BusinessInsightViewSet, basename="fc-insight")
router.register("forecasting/targets", ForecastTargetViewSet, basename="fc-target")

urlpatterns = [
    re_path(r"^analytics/predictions/?$", PredictionsView.as_view(), name="analytics-predictions"),
    re_path(r"^forecasting/recompute/?$", RecomputeView.as_view(), name="forecasting-recompute"),
    *router.urls,
]

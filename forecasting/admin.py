"""Admin pages of the forecasting system: every model, with charts of history and bands."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from forecasting import selectors, services, tasks
from forecasting.models import (
    HORIZONS,
    BacktestResult,
    BusinessInsight,
    Forecast,
    ForecastPoint,
    ForecastTarget,
)
from phase3.admin_actions import ActionPermissionMixin
from telemetry.admin_charts import ChartAdminMixin, ChartPage
from telemetry.charts import bar_chart, timeseries_chart

#: how much history a forecast chart shows before the forecast starts
CHART_HISTORY_FACTOR = 2


def forecast_chart(forecast: Forecast) -> str:
    """History (a window twice the horizon) + forecast line + 80%/95% bands."""
    arrays = selectors.forecast_arrays(forecast)
    start = forecast.history_end - timedelta(days=CHART_HISTORY_FACTOR * forecast.horizon_days)
    hist_ts, hist_values = services.target_history(forecast.target, end=forecast.history_end)
    keep = hist_ts >= start.timestamp()
    return timeseries_chart(
        f"{forecast.target.name}: {forecast.horizon_days}-day forecast ({forecast.model_name})",
        lines=[
            {"name": "history", "x": hist_ts[keep], "y": hist_values[keep]},
            {"name": "forecast", "x": arrays["ts"], "y": arrays["yhat"]},
        ],
        bands=[
            {
                "name": "95% interval",
                "x": arrays["ts"],
                "lower": arrays["lower95"],
                "upper": arrays["upper95"],
                "color": "rgba(99,110,250,0.12)",
            },
            {
                "name": "80% interval",
                "x": arrays["ts"],
                "lower": arrays["lower80"],
                "upper": arrays["upper80"],
                "color": "rgba(99,110,250,0.25)",
            },
        ],
    )


def backtest_chart(forecast: Forecast) -> str:
    rows = list(forecast.backtests.order_by("rank")[:12])
    return bar_chart(
        "Backtest MASE by model (lower is better; 1 = seasonal naive in-sample)",
        labels=[r.model_name for r in rows],
        values=[r.mase for r in rows],
    )


def _queue(targets, horizons=None) -> int:
    pairs = [(t.pk, h) for t in targets for h in (horizons or sorted(HORIZONS))]
    for target_id, horizon in pairs:
        transaction.on_commit(
            lambda t=target_id, h=horizon: tasks.recompute_series.delay(target_id=t, horizon_days=h)
        )
    return len(pairs)


@admin.register(ForecastTarget)
class ForecastTargetAdmin(ActionPermissionMixin, ChartAdminMixin, admin.ModelAdmin):
    list_display = ["name", "prediction_type", "source", "series", "event_metric", "threshold",
                    "threshold_direction", "enabled", "chart_link"]  # fmt: skip
    list_filter = ["prediction_type", "source", "enabled"]
    search_fields = ["name", "series__name", "event_metric"]
    list_editable = ["enabled"]
    # ``series`` is empty for event targets, and Django joins only non-null foreign keys itself.
    list_select_related = ["series"]
    raw_id_fields = ["series"]
    actions = ["recompute_now"]
    chart_url_name = "forecasting_target_chart"

    @admin.action(
        permissions=["act"], description="Recompute forecasts now (queued, every horizon)"
    )
    def recompute_now(self, request, queryset):
        n = _queue(queryset.filter(enabled=True))
        self.message_user(request, f"Queued {n} forecast tasks.", messages.SUCCESS)

    def save_model(self, request, obj: ForecastTarget, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change:
            services.target_edited(target_id=obj.pk, changed=form.changed_data)

    def chart_page(self, request: HttpRequest, target: ForecastTarget) -> ChartPage:
        forecasts = selectors.forecast_queryset().filter(target=target, is_current=True)
        charts = [forecast_chart(f) for f in forecasts.order_by("horizon_days")]
        rows = [(f"{f.horizon_days} days", f"{f.model_name} · MASE {f.backtest_mase or 0:.3f} "
                 f"vs seasonal naive {f.baseline_mase or 0:.3f}") for f in forecasts]  # fmt: skip
        return ChartPage(f"Forecasts of {target.name}", charts, rows)


class BacktestInline(admin.TabularInline):
    model = BacktestResult
    extra = 0
    can_delete = False
    fields = ["rank", "model_name", "mase", "smape", "is_chosen", "is_baseline"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Forecast)
class ForecastAdmin(ActionPermissionMixin, ChartAdminMixin, admin.ModelAdmin):
    list_display = ["target", "prediction_type", "horizon_days", "model_name", "backtest_mase",
                    "baseline_mase", "backtest_coverage80", "is_current", "created_at",
                    "chart_link"]  # fmt: skip
    list_filter = ["prediction_type", "horizon_days", "horizon_group", "is_current", "model_name"]
    search_fields = ["target__name", "model_name"]
    list_select_related = ["target"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Forecast._meta.fields]
    inlines = [BacktestInline]
    actions = ["recompute_now"]
    chart_url_name = "forecasting_forecast_chart"

    def has_add_permission(self, request) -> bool:
        return False  # forecasts are computed, never typed in

    @admin.action(permissions=["act"], description="Recompute these forecasts now (queued)")
    def recompute_now(self, request, queryset):
        n = 0
        for forecast in queryset.select_related("target"):
            n += _queue([forecast.target], [forecast.horizon_days])
        self.message_user(request, f"Queued {n} forecast tasks.", messages.SUCCESS)

    def get_chart_queryset(self) -> QuerySet:
        return selectors.forecast_queryset()

    def chart_page(self, request: HttpRequest, forecast: Forecast) -> ChartPage:
        rows = [
            ("model", forecast.model_name),
            ("backtest MASE", forecast.backtest_mase),
            (f"seasonal naive ({forecast.baseline_model}) MASE", forecast.baseline_mase),
            ("80% / 95% coverage (out of sample)",
             f"{forecast.backtest_coverage80} / {forecast.backtest_coverage95}"),
            ("history", f"{forecast.history_start:%Y-%m-%d} to {forecast.history_end:%Y-%m-%d} "
                        f"({forecast.history_points} points at {forecast.step_seconds:g}s)"),
        ]  # fmt: skip
        charts = [forecast_chart(forecast), backtest_chart(forecast)]
        return ChartPage(str(forecast), charts, rows)


@admin.register(ForecastPoint)
class ForecastPointAdmin(admin.ModelAdmin):
    list_display = ["forecast", "ts", "yhat", "lower80", "upper80", "lower95", "upper95"]
    list_filter = ["forecast__prediction_type", "forecast__horizon_days", "forecast__is_current"]
    search_fields = ["forecast__target__name"]
    list_select_related = ["forecast", "forecast__target"]
    raw_id_fields = ["forecast"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(BacktestResult)
class BacktestResultAdmin(admin.ModelAdmin):
    list_display = ["forecast", "rank", "model_name", "mase", "smape", "is_chosen", "is_baseline"]
    list_filter = ["is_chosen", "is_baseline", "forecast__prediction_type",
                   "forecast__horizon_days"]  # fmt: skip
    search_fields = ["model_name", "forecast__target__name"]
    list_select_related = ["forecast", "forecast__target"]
    raw_id_fields = ["forecast"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(BusinessInsight)
class BusinessInsightAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = ["summary", "kind", "prediction_type", "horizon_days", "confidence",
                    "expected_at", "is_current", "created_at"]  # fmt: skip
    list_filter = ["kind", "prediction_type", "is_current", "horizon_days"]
    search_fields = ["summary", "target__name"]
    list_select_related = ["target"]
    raw_id_fields = ["target", "forecast"]
    date_hierarchy = "created_at"
    actions = ["retire"]
    # Every column is the forecasting job's: it retires and replaces insights while a change
    # page is open, and a form posting the values the page was loaded with (``is_current``
    # above all) would bring a retired insight back next to its successor.
    readonly_fields = [f.name for f in BusinessInsight._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # insights are computed, never typed in

    def save_model(self, request, obj: BusinessInsight, form, change: bool) -> None:
        """Write only the fields the form lets an operator edit (none today), never the row.

        A plain ``save()`` would write back every column of the copy loaded for the page.
        """
        changed = form.changed_data if form is not None else []
        editable = [name for name in changed if name not in self.readonly_fields]
        if editable:
            obj.save(update_fields=editable)

    @admin.action(permissions=["act"], description="Retire (no longer current)")
    def retire(self, request, queryset):
        n = queryset.update(is_current=False)
        self.message_user(request, f"Retired {n} insights.", messages.SUCCESS)

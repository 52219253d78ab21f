"""Admin pages for telemetry: series with charts, samples, rollups, events, demo ground truth."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest
from django.utils import timezone
from django.utils.safestring import mark_safe

from phase3.admin_actions import ActionPermissionMixin

from . import tasks
from .admin_charts import ChartAdminMixin, ChartPage
from .charts import timeseries_chart
from .models import (
    ChangeEvent,
    DemoIncident,
    DemoUser,
    Event,
    RollupState,
    Sample,
    SampleRollup,
    Series,
)
from .selectors import horizon_of, series_points
from .selectors import lag_hours as rollup_lag_hours

CHART_RANGES = {"1d": (timedelta(days=1), None), "7d": (timedelta(days=7), 900.0),
                "90d": (timedelta(days=90), 3600.0), "1y": (timedelta(days=365), 86400.0)}  # fmt: skip


def series_chart(series: Series, span: str = "7d") -> str:
    """Mean with a min-max band over the chosen span (raw for one day, buckets beyond)."""
    window, step = CHART_RANGES[span]
    end = timezone.now()
    start = end - window
    mean = series_points(series.pk, start=start, end=end, step_seconds=step, agg="mean")
    bands = []
    if step is not None:
        low = series_points(series.pk, start=start, end=end, step_seconds=step, agg="min")
        high = series_points(series.pk, start=start, end=end, step_seconds=step, agg="max")
        bands = [{"name": "min–max", "x": low.ts, "lower": low.values, "upper": high.values}]
    return timeseries_chart(
        f"{series} — last {span} ({mean.source})",
        lines=[{"name": "mean" if step else "value", "x": mean.ts, "y": mean.values}],
        bands=bands,
        y_title=series.unit,
    )


@admin.register(Series)
class SeriesAdmin(ChartAdminMixin, admin.ModelAdmin):
    list_display = ["name", "labels_key", "unit", "kind", "importance", "created_at", "chart_link"]
    list_filter = ["kind", "unit"]
    search_fields = ["name", "labels_key", "description"]
    readonly_fields = ["labels_key", "created_at"]
    chart_url_name = "telemetry_series_chart"

    def chart_page(self, request: HttpRequest, series: Series) -> ChartPage:
        span = request.GET.get("span", "7d")
        span = span if span in CHART_RANGES else "7d"
        links = " · ".join(f'<a href="?span={s}">{s}</a>' for s in CHART_RANGES)
        rows = [("unit", series.unit or "—"), ("kind", series.kind), ("ranges", mark_safe(links))]
        return ChartPage(str(series), [series_chart(series, span)], rows)


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = ["series", "ts", "value"]
    list_select_related = ["series"]
    list_filter = [("ts", admin.DateFieldListFilter)]
    search_fields = ["series__name"]
    raw_id_fields = ["series"]
    show_full_result_count = False  # counting millions of samples on every page is wasted work


@admin.register(SampleRollup)
class SampleRollupAdmin(admin.ModelAdmin):
    list_display = ["series", "bucket", "count", "mean", "min", "max"]
    list_select_related = ["series"]
    list_filter = [("bucket", admin.DateFieldListFilter)]
    search_fields = ["series__name", "series__labels_key"]
    raw_id_fields = ["series"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False  # rollups are computed from samples, never typed in

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RollupState)
class RollupStateAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = ["step_seconds", "rolled_until", "dirty_from", "lag_hours", "updated_at"]
    readonly_fields = ["step_seconds", "rolled_until", "dirty_from", "updated_at"]
    actions = ["update_rollups_now", "enforce_retention_now"]

    @admin.display(description="lag (hours)")
    def lag_hours(self, obj: RollupState) -> float | None:
        """The lag of this row, from its own marks as ``rollup_status()`` computes it.

        ``rollup_status()`` reads the hourly state again (twice) for every row listed.
        """
        return rollup_lag_hours(horizon_of(obj.rolled_until, obj.dirty_from), timezone.now())

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(permissions=["act"], description="Update rollups now (queued)")
    def update_rollups_now(self, request, queryset):
        transaction.on_commit(tasks.update_rollups.delay)
        self.message_user(request, "Rollup update queued.", messages.SUCCESS)

    @admin.action(permissions=["act"], description="Enforce raw retention now (queued)")
    def enforce_retention_now(self, request, queryset):
        transaction.on_commit(tasks.enforce_retention.delay)
        self.message_user(request, "Retention run queued.", messages.SUCCESS)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["user_id", "name", "ts", "session_id", "client_id"]
    list_filter = ["name", ("ts", admin.DateFieldListFilter)]
    search_fields = ["user_id", "session_id", "client_id"]
    show_full_result_count = False


@admin.register(ChangeEvent)
class ChangeEventAdmin(admin.ModelAdmin):
    """Deploys and other changes; anomalies name the ones just before their onset."""

    list_display = ["at", "kind", "title", "labels", "source", "created_by"]
    list_filter = ["kind", "source", ("at", admin.DateFieldListFilter)]
    search_fields = ["title", "source", "created_by"]
    readonly_fields = ["created_by", "created_at"]
    date_hierarchy = "at"

    def save_model(self, request, obj: ChangeEvent, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)


@admin.register(DemoIncident)
class DemoIncidentAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "cause_series", "start", "end", "effects"]
    list_filter = ["kind"]
    search_fields = ["name", "description", "cause_series__name"]
    # By id: a product's thousands of series would each be an option of two widgets.
    raw_id_fields = ["cause_series", "effect_series"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("cause_series")
            .annotate(n_effects=Count("effect_series"))
        )

    @admin.display(description="effects", ordering="n_effects")
    def effects(self, obj) -> int:
        return obj.n_effects


@admin.register(DemoUser)
class DemoUserAdmin(admin.ModelAdmin):
    list_display = ["user_id", "kind"]
    list_filter = ["kind"]
    search_fields = ["user_id"]

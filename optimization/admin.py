"""Admin pages: every model, searchable and filterable, operator actions, charts."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from phase3.admin_actions import ActionPermissionMixin
from telemetry.admin_charts import ChartAdminMixin, ChartPage

from . import charts, services
from .models import (
    AnalysisReport,
    Baseline,
    EndpointProfile,
    HealthSnapshot,
    QueryShapeStat,
    Recommendation,
)


def _run_per_row(modeladmin, request, queryset, fn, verb: str, **kwargs) -> None:
    done, refused = 0, []
    for rec in queryset:
        try:
            fn(recommendation_id=rec.pk, actor=request.user.get_username(), **kwargs)
            done += 1
        except services.RecommendationStateError as exc:
            refused.append(f"#{rec.pk}: {exc}")
    if done:
        modeladmin.message_user(request, f"{verb}: {done} recommendation(s).", messages.SUCCESS)
    for line in refused:
        modeladmin.message_user(request, line, messages.WARNING)


@admin.register(Recommendation)
class RecommendationAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = ["title", "category", "state", "confidence", "predicted_ms_saved_per_day",
                    "realised_ms_saved_per_day", "complexity", "risk", "times_seen",
                    "last_seen_at"]  # fmt: skip
    list_filter = ["state", "category", "complexity", "risk"]
    search_fields = ["title", "endpoint", "resource", "dedup_key", "confidence_explanation"]
    date_hierarchy = "first_seen_at"
    readonly_fields = [f.name for f in Recommendation._meta.fields]
    actions = ["claim", "mark_applied", "dismiss", "rollback", "verify_now"]

    def has_add_permission(self, request) -> bool:
        return False  # recommendations come from the analysis, not from hand entry

    @admin.action(permissions=["act"], description="Claim (I am working on it)")
    def claim(self, request, queryset):
        _run_per_row(self, request, queryset, services.recommendation_claim, "Claimed")

    @admin.action(permissions=["act"], description="Mark applied now (starts verification)")
    def mark_applied(self, request, queryset):
        _run_per_row(self, request, queryset, services.recommendation_mark_applied, "Applied")

    @admin.action(permissions=["act"], description="Dismiss")
    def dismiss(self, request, queryset):
        _run_per_row(self, request, queryset, services.recommendation_dismiss, "Dismissed")

    @admin.action(permissions=["act"], description="Roll back (the change was reverted)")
    def rollback(self, request, queryset):
        _run_per_row(self, request, queryset, services.recommendation_rollback, "Rolled back")

    @admin.action(permissions=["act"], description="Verify realised impact now")
    def verify_now(self, request, queryset):
        done, refused = 0, []
        for rec in queryset:
            try:
                services.recommendation_verify(recommendation_id=rec.pk)
                done += 1
            except services.RecommendationStateError as exc:
                refused.append(f"#{rec.pk}: {exc}")
        self.message_user(request, f"Verified {done} recommendation(s).", messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.WARNING)


@admin.register(Baseline)
class BaselineAdmin(ActionPermissionMixin, ChartAdminMixin, admin.ModelAdmin):
    list_display = ["series", "metric", "endpoint", "points", "trend_relative_change_per_week",
                    "trend_significant", "computed_at", "chart_link"]  # fmt: skip
    list_filter = ["metric", "trend_significant"]
    search_fields = ["metric", "endpoint"]
    readonly_fields = [f.name for f in Baseline._meta.fields]
    actions = ["recompute"]
    chart_url_name = "optimization_baseline_chart"
    chart_link_text = "vs baseline"

    def has_add_permission(self, request) -> bool:
        return False

    def get_chart_queryset(self) -> QuerySet:
        return Baseline.objects.select_related("series")

    def chart_page(self, request: HttpRequest, baseline: Baseline) -> ChartPage:
        return ChartPage(
            f"{baseline.series} vs baseline",
            [charts.baseline_chart(baseline)],
            [
                ("points in baseline", baseline.points),
                ("window", f"{baseline.window_start:%Y-%m-%d} .. {baseline.window_end:%Y-%m-%d}"),
                ("trend per week", baseline.trend_relative_change_per_week),
                ("trend significant", baseline.trend_significant),
            ],
        )

    @admin.action(permissions=["act"], description="Recompute the selected baselines now")
    def recompute(self, request, queryset):
        counts = services.baselines_recompute(
            series_ids=list(queryset.values_list("series_id", flat=True))
        )
        self.message_user(request, f"Recomputed: {counts}", messages.SUCCESS)


@admin.register(HealthSnapshot)
class HealthSnapshotAdmin(admin.ModelAdmin):
    list_display = ["at", "score", "window_start", "window_end", "computed_at"]
    date_hierarchy = "at"
    search_fields = ["at"]
    readonly_fields = [f.name for f in HealthSnapshot._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "health_chart": charts.health_chart()}
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(AnalysisReport)
class AnalysisReportAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = ["at", "health", "recommendations_seen", "recommendations_created",
                    "computed_at"]  # fmt: skip
    # ``health`` may be empty, and Django joins only non-null foreign keys by itself.
    list_select_related = ["health"]
    date_hierarchy = "at"
    search_fields = ["at"]
    readonly_fields = [f.name for f in AnalysisReport._meta.fields]
    actions = ["run_now"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(permissions=["act"], description="Run the analysis now (for the current hour)")
    def run_now(self, request, queryset):
        report = services.analysis_run()
        self.message_user(request, f"Analysis stored for {report.at:%Y-%m-%d %H:00}.")


@admin.register(EndpointProfile)
class EndpointProfileAdmin(admin.ModelAdmin):
    list_display = ["endpoint", "hour", "requests", "errors", "queries", "db_ms_sum"]
    list_filter = ["endpoint"]
    search_fields = ["endpoint"]
    date_hierarchy = "hour"
    readonly_fields = [f.name for f in EndpointProfile._meta.fields]


@admin.register(QueryShapeStat)
class QueryShapeStatAdmin(admin.ModelAdmin):
    list_display = ["endpoint", "hour", "database", "short_shape", "executions", "total_ms",
                    "max_ms", "n_plus_one_requests"]  # fmt: skip
    list_filter = ["database", "endpoint"]
    search_fields = ["endpoint", "shape", "shape_key"]
    date_hierarchy = "hour"
    readonly_fields = [f.name for f in QueryShapeStat._meta.fields]

    @admin.display(description="shape")
    def short_shape(self, obj: QueryShapeStat) -> str:
        return obj.shape[:120]

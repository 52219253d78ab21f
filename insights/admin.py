"""Admin pages: every insights model, filters, search, operator actions and charts."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from phase3.admin_actions import ActionPermissionMixin
from telemetry.admin_charts import ChartAdminMixin, ChartPage

from . import charts
from .models import FeatureImpact, Insight, MLModel, Segment, SegmentSnapshot, StatePattern
from .services.insights import insight_acknowledge, insight_dismiss
from .services.registry import ArtefactPruned, mlmodel_activate


class ModelVersionFilter(admin.RelatedFieldListFilter):
    """Filter by model version without loading every version's artefact bytes."""

    def field_choices(self, field, request, model_admin):
        return [
            (m.pk, str(m)) for m in MLModel.objects.defer("artefact").order_by("name", "-version")
        ]


class ReadOnlyResultAdmin(admin.ModelAdmin):
    """Results are written by services only; the admin shows and acts, it does not edit.

    A result row shows the model version that found it: ``model_path`` joins that model
    without its artefact bytes (a state forest is ~0.6 MB), which a plain join read once
    per listed row.
    """

    model_path: str | None = None

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if self.model_path:
            qs = qs.select_related(self.model_path).defer(f"{self.model_path}__artefact")
        return qs

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MLModel)
class MLModelAdmin(ActionPermissionMixin, ChartAdminMixin, ReadOnlyResultAdmin):
    list_display = ["name", "version", "kind", "primary_metric", "primary_score", "is_active",
                    "activation_rule", "training_rows", "holdout_rows", "trained_at",
                    "chart_link"]  # fmt: skip
    list_filter = ["kind", "is_active", "activation_rule", "name"]
    search_fields = ["name", "notes", "activation_reason"]
    exclude = ["artefact"]
    readonly_fields = ["artefact_sha256", "artefact_size"]
    actions = ["activate"]
    chart_url_name = "insights_mlmodel_chart"

    def get_queryset(self, request):
        return super().get_queryset(request).defer("artefact")

    def chart_link_label(self, obj: MLModel) -> str:
        return {"clustering": "segments", "feature_impact": "impact"}.get(obj.kind, "scores")

    def get_chart_queryset(self) -> QuerySet:
        return MLModel.objects.defer("artefact")

    def chart_page(self, request: HttpRequest, model: MLModel) -> ChartPage:
        chart_list = [charts.model_scores_chart(model.name)]
        if model.kind == MLModel.Kind.CLUSTERING:
            chart_list.insert(0, charts.segment_sizes_chart(model))
        elif model.kind == MLModel.Kind.FEATURE_IMPACT:
            chart_list = charts.feature_impact_charts(model) + chart_list
        rows = [(k, v) for k, v in sorted(model.metrics.items())]
        return ChartPage(str(model), chart_list, rows)

    @admin.action(
        permissions=["act"], description="Activate the selected version (one per model name)"
    )
    def activate(self, request, queryset):
        names = list(queryset.values_list("name", flat=True))
        if len(names) != len(set(names)):
            self.message_user(request, "Select one version per model name.", messages.ERROR)
            return
        try:
            for model in queryset:
                mlmodel_activate(model=model)
        except ArtefactPruned as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Activated {len(names)} version(s).")


class SegmentSnapshotInline(admin.TabularInline):
    model = SegmentSnapshot
    extra = 0
    can_delete = False
    readonly_fields = ["day", "size", "share"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Segment)
class SegmentAdmin(ReadOnlyResultAdmin):
    list_display = ["name", "model", "size", "share", "trend", "trend_slope_per_day",
                    "trend_p_value", "chart_link"]  # fmt: skip
    list_filter = ["trend", "model__is_active", ("model", ModelVersionFilter)]
    model_path = "model"
    search_fields = ["name"]
    inlines = [SegmentSnapshotInline]

    @admin.display(description="sizes over time")
    def chart_link(self, obj: Segment) -> str:
        url = reverse("admin:insights_mlmodel_chart", args=[obj.model_id])
        return format_html('<a href="{}">chart</a>', url)


@admin.register(SegmentSnapshot)
class SegmentSnapshotAdmin(ReadOnlyResultAdmin):
    list_display = ["segment", "day", "size", "share"]
    list_filter = ["day", ("segment__model", ModelVersionFilter)]
    model_path = "segment__model"
    search_fields = ["segment__name"]
    date_hierarchy = "day"


@admin.register(FeatureImpact)
class FeatureImpactAdmin(ReadOnlyResultAdmin):
    list_display = ["feature", "outcome", "odds_ratio", "ci_low", "ci_high", "q_value",
                    "adoption", "importance", "cost", "suggestion", "model"]  # fmt: skip
    list_filter = ["outcome", "suggestion", "model__is_active", ("model", ModelVersionFilter)]
    model_path = "model"
    search_fields = ["feature", "reason"]


@admin.register(StatePattern)
class StatePatternAdmin(ReadOnlyResultAdmin):
    list_display = ["label", "model", "episode_count", "weekly_hour", "first_seen", "last_seen",
                    "description"]  # fmt: skip
    list_filter = ["model__is_active", ("model", ModelVersionFilter)]
    model_path = "model"
    search_fields = ["description"]


@admin.register(Insight)
class InsightAdmin(ActionPermissionMixin, ReadOnlyResultAdmin):
    list_display = ["title", "category", "source", "priority", "impact", "confidence",
                    "novelty", "status", "times_seen", "last_seen_at"]  # fmt: skip
    list_filter = ["status", "category", "source"]
    search_fields = ["title", "body", "dedup_key"]
    readonly_fields = ["priority_explanation"]
    actions = ["acknowledge", "dismiss"]

    @admin.action(permissions=["act"], description="Acknowledge selected insights")
    def acknowledge(self, request, queryset):
        for insight in queryset:
            insight_acknowledge(insight=insight, actor=request.user.get_username())
        self.message_user(request, f"Acknowledged {queryset.count()} insight(s).")

    @admin.action(permissions=["act"], description="Dismiss selected insights")
    def dismiss(self, request, queryset):
        for insight in queryset:
            insight_dismiss(insight=insight, actor=request.user.get_username())
        self.message_user(request, f"Dismissed {queryset.count()} insight(s).")

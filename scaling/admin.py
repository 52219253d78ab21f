"""Admin pages: every scaling model, filters, search, operator actions, charts."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, Q, QuerySet, prefetch_related_objects
from django.http import HttpRequest

from phase3.admin_actions import ActionPermissionMixin
from telemetry.admin_charts import ChartAdminMixin, ChartPage

from . import charts, selectors, services
from .models import ScalableResource, ScalingDecision, ScalingRule


class ScalingRuleInline(admin.TabularInline):
    model = ScalingRule
    extra = 0
    fields = ["name", "metric", "kind", "target", "tolerance", "critical", "cooldown_up_seconds",
              "cooldown_down_seconds", "priority", "enabled"]  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet[ScalingRule]:
        """Each row is titled ``str(rule)``, which names the resource: join it, not a query
        per rule listed."""
        return super().get_queryset(request).select_related("resource")


@admin.register(ScalableResource)
class ScalableResourceAdmin(ActionPermissionMixin, ChartAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "current_units", "min_units", "max_units", "bounds",
                    "unit_capacity", "cost_per_unit_hour", "target_utilization", "actuator",
                    "enabled", "success_rate", "chart_link"]  # fmt: skip
    list_filter = ["kind", "actuator", "enabled", "predictive_enabled"]
    search_fields = ["name", "load_series_name"]
    inlines = [ScalingRuleInline]
    actions = ["evaluate_dry_run", "evaluate_and_execute"]
    chart_url_name = "scaling_scalableresource_chart"
    chart_link_text = "utilisation & capacity"

    def get_readonly_fields(
        self, request: HttpRequest, obj: ScalableResource | None = None
    ) -> list[str]:
        """``current_units`` belongs to the scaling job once the resource exists.

        A form loaded minutes ago carries the size of that moment; saving it would undo
        what the job did since. It is set by hand only when the resource is added.
        """
        return [*super().get_readonly_fields(request, obj), "updated_at"] + (
            ["current_units"] if obj is not None else []
        )

    def save_model(
        self, request: HttpRequest, obj: ScalableResource, form: forms.ModelForm, change: bool
    ) -> None:
        """On edit, write only what the operator changed (a full save reverts the job)."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        try:
            services.resource_update(
                resource_id=obj.pk, data={name: getattr(obj, name) for name in form.changed_data}
            )
        except ValidationError as exc:  # bounds crossed by a concurrent edit: nothing saved
            for field, problems in exc.message_dict.items():
                self.message_user(request, f"Not saved: {field} {'; '.join(problems)}",
                                  messages.ERROR)  # fmt: skip

    @admin.display(description="bounds")
    def bounds(self, obj: ScalableResource) -> str:
        """Said while an actuator's reported size (or moved bounds) leaves the resource
        outside them, until the next evaluation scales back to the bound."""
        return obj.bounds_condition or "within"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ScalableResource]:
        """Count judged and successful decisions in the list's own query (as
        ``selectors.success_rate`` does), not in a query per resource shown."""
        judged = Q(decisions__outcome__in=selectors.JUDGED)
        return (
            super()
            .get_queryset(request)
            .annotate(
                decisions_judged=Count("decisions", filter=judged),
                decisions_succeeded=Count(
                    "decisions", filter=Q(decisions__outcome=ScalingDecision.Outcome.SUCCESS)
                ),
            )
        )

    @admin.display(description="success rate")
    def success_rate(self, obj: ScalableResource) -> str:
        judged = obj.decisions_judged
        return "-" if not judged else f"{obj.decisions_succeeded / judged:.0%} of {judged}"

    def chart_page(self, request: HttpRequest, resource: ScalableResource) -> ChartPage:
        rate = selectors.success_rate(resource_id=resource.pk)
        return ChartPage(
            f"{resource.name}: utilisation, capacity and decisions (7 days)",
            charts.resource_charts(resource),
            [
                (
                    "units now",
                    f"{resource.current_units} ({resource.min_units}..{resource.max_units})",
                ),
                ("target utilisation", f"{resource.target_utilization:.0%}"),
                (
                    "cost per hour now",
                    f"{resource.current_units * resource.cost_per_unit_hour:.2f}",
                ),
                (
                    "success rate",
                    "-"
                    if rate["rate"] is None
                    else f"{rate['rate']:.0%} ({rate['success']}/{rate['judged']} judged)",
                ),
            ],
        )

    @admin.action(
        permissions=["act"], description="Evaluate now (dry run: show what the rules would do)"
    )
    def evaluate_dry_run(self, request, queryset):
        for ev in services.decisions_evaluate(
            resource_ids=list(queryset.values_list("pk", flat=True))
        ):
            d = ev.decision
            self.message_user(
                request,
                f"{ev.resource}: {d.action} {d.current_units}->{d.desired_units} "
                f"({d.status}); {'; '.join(d.reasons)}",
                messages.INFO,
            )

    @admin.action(permissions=["act"], description="Evaluate and execute now")
    def evaluate_and_execute(self, request, queryset):
        evaluations = services.decisions_evaluate(
            resource_ids=list(queryset.values_list("pk", flat=True)), execute=True
        )
        for ev in evaluations:
            row = ev.row
            level = (
                messages.ERROR if row.status == ScalingDecision.Status.FAILED else messages.SUCCESS
            )
            self.message_user(
                request, f"{ev.resource}: {row.action} {row.current_units}->{row.desired_units} "
                f"{row.status} {row.actuator_detail}", level,
            )  # fmt: skip


@admin.register(ScalingRule)
class ScalingRuleAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = ["name", "resource", "metric", "kind", "target", "tolerance", "critical",
                    "cooldown_up_seconds", "cooldown_down_seconds", "priority", "enabled"]  # fmt: skip
    list_editable = ["target", "tolerance", "critical", "enabled"]
    list_filter = ["kind", "enabled", "resource"]
    search_fields = ["name", "metric", "queue", "resource__name"]
    actions = ["enable", "disable"]

    @admin.action(permissions=["act"], description="Enable the selected rules")
    def enable(self, request, queryset):
        self.message_user(request, f"Enabled {queryset.update(enabled=True)} rule(s).")

    @admin.action(permissions=["act"], description="Disable the selected rules")
    def disable(self, request, queryset):
        self.message_user(request, f"Disabled {queryset.update(enabled=False)} rule(s).")


@admin.register(ScalingDecision)
class ScalingDecisionAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = ["at", "resource", "action", "current_units", "desired_units", "applied_units",
                    "status", "emergency", "predictive", "cost_per_month_delta",
                    "utilization_before", "expected_utilization", "outcome"]  # fmt: skip
    list_filter = ["status", "action", "outcome", "emergency", "predictive", "resource"]
    search_fields = ["resource__name", "winning_sources", "reasons", "actuator_detail"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in ScalingDecision._meta.fields] + ["rules"]
    actions = ["execute_proposed", "check_outcomes_now"]

    def has_add_permission(self, request) -> bool:
        return False  # decisions come from the engine, not from hand entry

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        """The read-only ``rules`` field shows ``str(rule)``, which names the rule's resource:
        fetch the rules with their resources in one query, not a query per rule."""
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            rules = ScalingRule.objects.select_related("resource")
            prefetch_related_objects([obj], Prefetch("rules", queryset=rules))
        return obj

    @admin.action(permissions=["act"], description="Execute the selected proposed decisions")
    def execute_proposed(self, request, queryset):
        # decision_execute claims each row itself: one still PROPOSED here may be taken by
        # the scaling job before we get to it, and then it is reported, not acted on again.
        for row in queryset.filter(status=ScalingDecision.Status.PROPOSED):
            done = services.decision_execute(decision_id=row.pk)
            self.message_user(request, f"#{done.pk}: {done.status} {done.actuator_detail}")

    @admin.action(
        permissions=["act"], description="Judge outcomes now (decisions past their settle time)"
    )
    def check_outcomes_now(self, request, queryset):
        self.message_user(request, f"Outcomes: {services.outcomes_check()}")

"""The anomaly pages: the list with operator actions, and each anomaly with its chart,
root causes and executions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html_join

from phase3.admin_actions import ActionPermissionMixin, may_add
from telemetry.admin_charts import ChartAdminMixin, ChartPage
from telemetry.charts import timeseries_chart

from .. import selectors, services
from ..models import (
    Anomaly,
    DetectionTuning,
    DismissedPattern,
    ResponseExecution,
    RootCauseCandidate,
    Silence,
)
from ..tunings import tuning_of, usable_tunings
from .shared import MaskedSecretsMixin, ReadOnlyAdmin, apply_each


class RootCauseInline(admin.TabularInline):
    model = RootCauseCandidate
    fk_name = "anomaly"
    fields = ["rank", "series", "why", "score", "lead_seconds", "evidence"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="why ranked here")
    def why(self, obj: RootCauseCandidate) -> str:
        """The ranking's reasons in words (`engine.root_cause`: onset, then a declared
        dependency, then the signal layer): an operator who doubts a rank-1 cause reads
        why it leads without decoding the evidence."""
        evidence = obj.evidence or {}
        if evidence.get("is_self"):
            reasons = ["the anomaly's own series"]
        else:
            minutes = abs(obj.lead_seconds) / 60
            when = "before" if obj.lead_seconds >= 0 else "after"
            reasons = [f"moved {minutes:.0f} min {when} it"]
        if rule := evidence.get("declared_by"):
            reasons.append(f"declared a source by inhibition rule {rule!r}")
        if (layer := evidence.get("layer")) in ("demand", "resource"):
            by = f" (signal layer rule {rule!r})" if (rule := evidence.get("layer_rule")) else ""
            reasons.append(f"a {layer} signal{by}")
        return "; ".join(reasons)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("series")


class ResponseExecutionInline(MaskedSecretsMixin, admin.TabularInline):
    model = ResponseExecution
    fields = ["playbook", "status", "attempts", "repeats", "duration_ms", "error"]
    readonly_fields = fields
    masked = {"error": "masked_error"}
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("playbook")


def _operator_action(service, verb: str):
    def run(modeladmin, request, queryset):
        def call(anomaly):
            service(anomaly_id=anomaly.pk, by=request.user.get_username())

        apply_each(
            request, queryset, call, services.AnomalyStateError, "{count} anomalies " + verb + "."
        )

    return run


class AnomalyStateFilter(admin.SimpleListFilter):
    """Ongoing / recovering / closed: a recovered anomaly waiting out its quiet period is
    still open, and listed among the ongoing ones it looked like one being fought."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return Anomaly.State.choices

    def queryset(self, request, queryset):
        if self.value() in Anomaly.State.values:
            return queryset.filter(selectors.anomaly_state_q(self.value()))
        return queryset


@admin.register(Anomaly)
class AnomalyAdmin(ActionPermissionMixin, ChartAdminMixin, admin.ModelAdmin):
    list_display = [
        "series",
        "severity",
        "status",
        "state",
        "started_at",
        "ended_at",
        "peak_score",
        "methods",
        "chart_link",
    ]
    list_filter = [AnomalyStateFilter, "status", "severity", "started_at", "series__name"]
    search_fields = ["series__name", "series__labels_key", "note"]
    date_hierarchy = "started_at"
    list_select_related = ["series"]
    # Status changes go through the actions, which also end the anomaly, record who acted
    # and learn the dismissed pattern; an edited status field would do none of that.
    readonly_fields = [
        *(f.name for f in Anomaly._meta.fields if f.name != "note"),
        "explains",
        "changes",
        "routing",
    ]
    inlines = [RootCauseInline, ResponseExecutionInline]
    actions = ["acknowledge", "resolve", "false_positive", "silence_two_hours"]
    chart_url_name = "anomalies_anomaly_chart"

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="state")
    def state(self, anomaly: Anomaly) -> str:
        if anomaly.state == Anomaly.State.RECOVERING:
            return f"recovering since {anomaly.recovered_at:%Y-%m-%d %H:%M}"
        return anomaly.state

    @admin.display(description="changed just before")
    def changes(self, anomaly: Anomaly) -> str:
        """Deploys and other changes on its series' labels near its onset (`telemetry`'s
        change events), each linked to its pipeline run when it has one."""
        found = selectors.changes_before([anomaly])[anomaly.pk]
        if not found:
            return "no recorded change"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (
                    c.url or reverse("admin:telemetry_changeevent_change", args=[c.pk]),
                    selectors.change_text(c, anomaly.started_at),
                )
                for c in found
            ),
        )

    @admin.display(description="playbooks")
    def routing(self, anomaly: Anomaly) -> str:
        """Why each playbook did or did not respond (`selectors.anomaly_routing`): the
        on-call who was not paged reads why on the anomaly's own page."""
        rows = selectors.anomaly_routing(anomaly)
        if not rows:
            return "no playbook"
        return format_html_join(
            "",
            "<div><strong>{}</strong> ({}): {}</div>",
            ((r["name"], r["action"], _routing_text(r)) for r in rows),
        )

    @admin.display(description="likeliest cause of")
    def explains(self, anomaly: Anomaly) -> str:
        """The rest of its incident: the anomalies a playbook with `inhibit_effects` did
        not page on their own because they are put down to this one."""
        effects = list(
            Anomaly.objects.filter(pk__in=selectors.anomalies_explained_by(anomaly))
            .select_related("series")
            .order_by("started_at")
        )
        if not effects:
            return "no other anomaly"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (
                    reverse("admin:anomalies_anomaly_change", args=[e.pk]),
                    f"{e.series} ({e.severity})",
                )
                for e in effects
            ),
        )

    def save_model(self, request, obj: Anomaly, form, change: bool) -> None:
        """Write the note only: the scoring job may be extending or closing this anomaly,
        and a full save would put back the values the page was loaded with."""
        obj.save(update_fields=["note", "updated_at"])

    @admin.action(permissions=["act"], description="Acknowledge selected anomalies")
    def acknowledge(self, request, queryset):
        _operator_action(services.anomaly_acknowledge, "acknowledged")(self, request, queryset)

    @admin.action(permissions=["act"], description="Resolve selected anomalies")
    def resolve(self, request, queryset):
        _operator_action(services.anomaly_resolve, "resolved")(self, request, queryset)

    @admin.action(
        permissions=["act"], description="Mark as false positive (the pattern stops alerting)"
    )
    def false_positive(self, request, queryset):
        _operator_action(services.anomaly_mark_false_positive, "marked as false positives")(
            self, request, queryset
        )

    @admin.action(
        permissions=["silence"],
        description="Silence these series for 2 hours (no responses; still detected)",
    )
    def silence_two_hours(self, request, queryset):
        by = request.user.get_username()
        series_done = set()
        for anomaly in queryset.select_related("series"):
            if anomaly.series_id in series_done:
                continue
            series_done.add(anomaly.series_id)
            services.silence_anomaly_series(
                anomaly_id=anomaly.pk,
                minutes=120,
                comment=f"silenced from the admin by {by} while anomaly {anomaly.pk} is handled",
                by=by,
            )
        messages.success(request, f"{len(series_done)} series silenced for 2 hours.")

    def has_silence_permission(self, request: HttpRequest) -> bool:
        """It changes no anomaly: it makes a silence, so it asks what making one asks."""
        return may_add(request, Silence)

    def get_chart_queryset(self) -> QuerySet:
        return Anomaly.objects.select_related("series")

    def chart_page(self, request: HttpRequest, anomaly: Anomaly) -> ChartPage:
        ctx = selectors.anomaly_context(anomaly)
        chart = timeseries_chart(
            f"{anomaly.series} around the anomaly",
            lines=[
                {"name": "observed", "x": ctx["ts"], "y": ctx["values"]},
                {"name": "expected", "x": ctx["point_ts"], "y": ctx["expected"]},
            ],
            bands=[
                {
                    "name": "expected band (±3 scale)",
                    "x": ctx["point_ts"],
                    "lower": ctx["lower"],
                    "upper": ctx["upper"],
                }
            ],
            marks=[{"name": "abnormal points", "x": ctx["point_ts"], "y": ctx["point_values"]}],
            events=[
                {"x": c.at, "text": f"{c.get_kind_display().lower()} {c.title}"}
                for c in ctx["changes"]
            ],
            y_title=anomaly.series.unit,
        )
        rows = [
            ("series data", ctx["source"]),
            ("severity", anomaly.severity),
            ("status", anomaly.status),
            ("methods", ", ".join(anomaly.methods)),
            ("rules fired", ", ".join(anomaly.rules_fired) or "none"),
            ("detection tuning now", _tuning_text(tuning_of(anomaly.series, usable_tunings()))),
            ("observed / expected", f"{anomaly.observed:.4g} / {anomaly.expected:.4g}"),
            ("peak score", f"{anomaly.peak_score:.3f}"),
        ]
        return ChartPage(str(anomaly), [chart], rows)


def _tuning_text(tuning: DetectionTuning | None) -> str:
    if tuning is None:
        return "none (sensitivity medium, either direction)"
    return f"{tuning.name}: sensitivity {tuning.sensitivity}, direction {tuning.direction}"


@admin.register(RootCauseCandidate)
class RootCauseCandidateAdmin(ReadOnlyAdmin):
    list_display = ["anomaly", "rank", "series", "score", "lead_seconds"]
    list_filter = ["rank"]
    search_fields = ["series__name", "anomaly__series__name"]
    list_select_related = ["anomaly__series", "series"]


@admin.register(DismissedPattern)
class DismissedPatternAdmin(admin.ModelAdmin):
    list_display = ["series", "direction", "peak_z", "methods", "suppressed_count", "created_at"]
    list_filter = ["direction", "created_at"]
    search_fields = ["series__name", "created_by"]
    readonly_fields = ["series", "anomaly", "suppressed_count", "created_at"]


def _routing_text(row: dict) -> str:
    if not row["matches"]:
        return "does not match: " + "; ".join(row["not_matched"])
    if (e := row["execution"]) is not None:
        why = f": {e['error']}" if e["error"] else ""
        return f"{e['status']}{why}"
    return "; ".join(row["held_now"]) or "matches: the next scoring run responds"

"""Admin pages: every model, searchable and filterable, operator actions, charts.

Actions call services; forms reuse the API's validation so both reject the same input.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from phase3.admin_actions import ActionPermissionMixin
from telemetry.admin_charts import ChartAdminMixin, ChartPage, render_chart_page

from . import charts, selectors, services, validation
from .engine.rollout import rollout_percent_parse
from .models import (
    Experiment,
    ExperimentResult,
    ExperimentShipment,
    Exposure,
    PersonaChange,
    PersonalizationRule,
    PersonaModelRun,
    UserProfile,
)


class PersonaChangeInline(admin.TabularInline):
    model = PersonaChange
    fields = ["changed_at", "previous_persona", "persona", "confidence"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-changed_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PersonaChange]:
        """Each row is titled ``str(change)``, which reads the profile's user id: join the
        profile, not a query per change listed."""
        return super().get_queryset(request).select_related("profile")


@admin.register(UserProfile)
class UserProfileAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = ["user_id", "persona", "persona_confidence", "sessions", "event_count",
                    "segments", "last_seen_at", "computed_at"]  # fmt: skip
    list_filter = ["persona", "computed_at"]
    search_fields = ["user_id"]
    # Everything but ``attributes`` is written by ``profiles_recompute``.
    readonly_fields = ["user_id", "features", "persona", "persona_confidence",
                       "persona_probabilities", "segments", "sessions", "event_count",
                       "last_seen_at", "model_run", "computed_at", "config_preview"]  # fmt: skip
    inlines = [PersonaChangeInline]
    actions = ["recompute_all"]

    def has_add_permission(self, request) -> bool:
        return False

    def save_model(self, request, obj: UserProfile, form, change: bool) -> None:
        """Write only ``attributes``: a full save of the copy this form was built on
        reverted whatever the recompute job wrote meanwhile (persona, features, ...)."""
        services.profile_attributes_update(profile_id=obj.pk, attributes=obj.attributes)

    @admin.display(description="resolved configuration now")
    def config_preview(self, obj: UserProfile) -> str:
        url = reverse("personalization-user-config", kwargs={"user_id": obj.user_id})
        return format_html('<a href="{}">{}</a>', url, url)

    def get_urls(self):
        view = self.admin_site.admin_view(self.distribution_view)
        return [
            path("personas/", view, name="personalization_userprofile_personas"),
            *super().get_urls(),
        ]

    def distribution_view(self, request):
        page = ChartPage(
            "Personas", [charts.persona_distribution_chart(), charts.persona_history_chart()]
        )
        return render_chart_page(self, request, page)

    def changelist_view(self, request, extra_context=None):
        link = reverse("admin:personalization_userprofile_personas")
        extra_context = {**(extra_context or {}), "subtitle": format_html(
            'Persona distribution chart: <a href="{}">{}</a>', link, link)}  # fmt: skip
        return super().changelist_view(request, extra_context)

    @admin.action(
        permissions=["act"], description="Recompute every profile and persona now (28 days)"
    )
    def recompute_all(self, request, queryset):
        counts = services.profiles_recompute(days=28)
        self.message_user(request, f"Profiles recomputed: {counts}")


@admin.register(PersonaChange)
class PersonaChangeAdmin(admin.ModelAdmin):
    list_display = ["profile", "previous_persona", "persona", "confidence", "changed_at"]
    list_filter = ["persona", "previous_persona", "changed_at"]
    search_fields = ["profile__user_id"]
    list_select_related = ["profile"]
    readonly_fields = ["profile", "previous_persona", "persona", "confidence", "model_run",
                       "changed_at"]  # fmt: skip

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(PersonaModelRun)
class PersonaModelRunAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = ["computed_at", "users_total", "users_classified", "labelled_users",
                    "accuracy", "ece", "brier", "ece_uncalibrated", "temperature", "note"]  # fmt: skip
    list_filter = ["computed_at"]
    search_fields = ["note"]
    readonly_fields = [f.name for f in PersonaModelRun._meta.fields]
    actions = ["run_now"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(permissions=["act"], description="Run the persona model now (28 days)")
    def run_now(self, request, queryset):
        counts = services.profiles_recompute(days=28)
        self.message_user(request, f"Profiles recomputed: {counts}")


class JsonDocumentForm(forms.ModelForm):
    """Runs the API's validators on the JSON documents, so the admin rejects the same input."""

    checks: dict = {}

    def clean(self):
        cleaned = super().clean()
        for field, check in self.checks.items():
            if field in cleaned:
                for error in check(cleaned[field]):
                    self.add_error(field, error)
        return cleaned


class RuleForm(JsonDocumentForm):
    checks = {"conditions": validation.conditions_errors, "action": validation.action_errors}

    class Meta:
        model = PersonalizationRule
        fields = ["key", "name", "description", "conditions", "action", "priority", "enabled",
                  "starts_at", "ends_at"]  # fmt: skip


@admin.register(PersonalizationRule)
class PersonalizationRuleAdmin(ActionPermissionMixin, admin.ModelAdmin):
    form = RuleForm
    list_display = ["key", "name", "priority", "enabled", "starts_at", "ends_at", "updated_at"]
    list_filter = ["enabled", "priority"]
    list_editable = ["priority", "enabled"]
    search_fields = ["key", "name", "description"]
    actions = ["enable", "disable"]

    @admin.action(permissions=["act"], description="Enable selected rules")
    def enable(self, request, queryset):
        n = services.rules_set_enabled(rule_ids=list(queryset.values_list("pk", flat=True)),
                                       enabled=True)  # fmt: skip
        self.message_user(request, f"{n} rule(s) enabled.")

    @admin.action(permissions=["act"], description="Disable selected rules")
    def disable(self, request, queryset):
        n = services.rules_set_enabled(rule_ids=list(queryset.values_list("pk", flat=True)),
                                       enabled=False)  # fmt: skip
        self.message_user(request, f"{n} rule(s) disabled.")


class ExperimentForm(JsonDocumentForm):
    checks = {
        "variants": validation.variants_errors,
        "targeting": validation.conditions_errors,
        "primary_metric": validation.metric_errors,
        "guardrail_metrics": validation.guardrails_errors,
    }

    class Meta:
        model = Experiment
        fields = ["key", "name", "description", "variants", "coverage", "targeting",
                  "primary_metric", "guardrail_metrics", "alpha", "planned_users",
                  "minimum_effect", "starts_at", "ends_at"]  # fmt: skip


class ShipActionForm(helpers.ActionForm):
    """The changelist's action bar with the variant the "ship" action serves and the
    rollout percentage of "ship" and "set rollout".

    The percentage is text, parsed by the action: a field that failed the form's own
    validation would make Django answer "No action selected." instead of saying why.
    """

    variant = forms.CharField(
        required=False, max_length=100, label="Variant (for ship)",
        help_text="Name of the variant to serve to the targeted users.",
    )  # fmt: skip
    rollout_percent = forms.CharField(
        required=False, max_length=20, label="Rollout % (for ship / set rollout)",
        help_text="Share of the targeted users served the variant, 0-100 (ship: empty = 100).",
    )  # fmt: skip


class ExperimentResultInline(admin.TabularInline):
    model = ExperimentResult
    fields = ["computed_at", "metric", "is_primary", "users", "srm_p_value", "srm_mismatch",
              "note"]  # fmt: skip
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    ordering = ["-computed_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-computed_at")


@admin.register(Experiment)
class ExperimentAdmin(ActionPermissionMixin, ChartAdminMixin, admin.ModelAdmin):
    form = ExperimentForm
    list_display = ["key", "name", "status", "shipped_variant", "rollout", "starts_at",
                    "ends_at", "results_link"]  # fmt: skip
    list_filter = ["status", ("shipped_variant", admin.EmptyFieldListFilter)]
    search_fields = ["key", "name", "description"]
    readonly_fields = ["status", *services.SHIP_FIELDS, "ship_history", "created_at",
                       "updated_at"]  # fmt: skip
    actions = ["start", "stop", "ship", "set_rollout", "unship", "recompute_results"]
    action_form = ShipActionForm
    chart_url_name = "personalization_experiment_results"
    chart_path = "results"

    def get_readonly_fields(self, request, obj: Experiment | None = None) -> list[str]:
        """Once started, the arms and who is in them are fixed (as in the API); once
        stopped, ``ends_at`` is the stop's: a form opened earlier must not move it."""
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status != Experiment.Status.DRAFT:
            fields.extend(services.FROZEN_ONCE_STARTED)
        if obj is not None and obj.status == Experiment.Status.STOPPED:
            fields.append("ends_at")
        return fields

    def save_model(self, request, obj: Experiment, form, change: bool) -> None:
        """Edits write only the form's fields, under the row lock (see ``experiment_update``);
        a full save put back the status and ``ends_at`` a concurrent stop had just set."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        changes = {f: getattr(obj, f) for f in form.cleaned_data if f in form._meta.fields}
        services.experiment_update(experiment_id=obj.pk, changes=changes)

    @admin.display(description="rollout", ordering="rollout_percent")
    def rollout(self, obj: Experiment) -> str:
        if not obj.shipped_variant:
            return "-"
        if obj.rollout_step_percent:
            return (
                f"{obj.rollout_percent:g}% (+{obj.rollout_step_percent:g}% every "
                f"{obj.rollout_step_hours:g} h)"
            )
        return f"{obj.rollout_percent:g}%"

    @admin.display(description="ship history")
    def ship_history(self, obj: Experiment) -> str:
        """Who shipped which variant to what percentage when, and who ramped, replaced or
        rolled it back. Read-only text rather than an inline: an inline's formset would
        make every edit form post its own management data for rows nobody may edit."""
        rows = [
            (s.variant, f"{s.rollout_percent:g}", f"{s.shipped_at:%Y-%m-%d %H:%M}",
             s.shipped_by or "-",
             f"ended {s.unshipped_at:%Y-%m-%d %H:%M} by {s.unshipped_by or '-'}"
             if s.unshipped_at else "live")
            for s in obj.shipments.all()
        ]  # fmt: skip
        if not rows:
            return "-"
        return format_html_join(mark_safe("<br>"), "{} at {}% shipped {} by {} ({})", rows)

    @admin.display(description="results")
    def results_link(self, obj: Experiment) -> str:
        return self.chart_link(obj)

    def chart_page(self, request: HttpRequest, experiment: Experiment) -> ChartPage:
        return ChartPage(
            f"Experiment {experiment.key}",
            charts.experiment_lift_charts(experiment),
            result_rows(experiment),
        )

    def _transition(self, request, queryset, fn, verb: str) -> None:
        for exp in queryset:
            try:
                fn(experiment_id=exp.pk)
                self.message_user(request, f"{exp.key}: {verb}.")
            except services.ExperimentStateError as exc:
                self.message_user(request, f"{exp.key}: {exc}", level=messages.ERROR)

    @admin.action(permissions=["act"], description="Start selected experiments")
    def start(self, request, queryset):
        self._transition(request, queryset, services.experiment_start, "started")

    @admin.action(permissions=["act"], description="Stop selected experiments")
    def stop(self, request, queryset):
        self._transition(request, queryset, services.experiment_stop, "stopped")

    @admin.action(
        permissions=["act"],
        description="Ship the variant named below to every targeted user (stops a running one)",
    )
    def ship(self, request, queryset):
        variant = request.POST.get("variant", "")
        text = request.POST.get("rollout_percent", "").strip()
        percent, error = rollout_percent_parse(text) if text else (None, None)
        if error:
            self.message_user(request, f"rollout_percent: {error}", level=messages.ERROR)
            return
        by = request.user.get_username()
        for exp in queryset:
            try:
                exp = services.experiment_ship(
                    experiment_id=exp.pk, variant=variant, rollout_percent=percent, by=by
                )
                self.message_user(
                    request, f"{exp.key}: {variant} shipped to {exp.rollout_percent:g}%."
                )
            except services.ExperimentStateError as exc:
                self.message_user(request, f"{exp.key}: {exc.field}: {exc}", level=messages.ERROR)

    @admin.action(
        permissions=["act"],
        description="Set the rollout %% (typed below) of the shipped variant of selected experiments",
    )
    def set_rollout(self, request, queryset):
        percent, error = rollout_percent_parse(request.POST.get("rollout_percent", ""))
        if error:
            self.message_user(request, f"rollout_percent: {error}", level=messages.ERROR)
            return
        by = request.user.get_username()
        for exp in queryset:
            try:
                services.experiment_rollout_set(
                    experiment_id=exp.pk, rollout_percent=percent, by=by
                )
                self.message_user(request, f"{exp.key}: rollout set to {percent:g}%.")
            except services.ExperimentStateError as exc:
                self.message_user(request, f"{exp.key}: {exc.field}: {exc}", level=messages.ERROR)

    @admin.action(permissions=["act"], description="Un-ship (roll back) selected experiments")
    def unship(self, request, queryset):
        by = request.user.get_username()
        self._transition(
            request, queryset, lambda **kw: services.experiment_unship(**kw, by=by), "un-shipped"
        )

    @admin.action(permissions=["act"], description="Recompute results now")
    def recompute_results(self, request, queryset):
        for exp in queryset:
            counts = services.experiment_results_recompute(experiment_id=exp.pk)
            self.message_user(request, f"{exp.key}: {counts}")


def _fmt(value, spec: str) -> str:
    """Undefined figures (e.g. a lift over a zero control rate) are stored as null."""
    return "n/a" if value is None else format(value, spec)


def arm_rows(result: ExperimentResult) -> list[tuple[str, str]]:
    """Each arm's own rate or mean with its interval: "control (1200 users)", "8.10% [...]"."""
    spec = ".2%" if result.metric_kind == Experiment.MetricKind.CONVERSION else ".4g"
    level = f"{1 - result.experiment.alpha:.0%}"
    rows = []
    for arm in result.arms or []:
        ci = arm.get("ci") or {}
        rows.append((
            f"{arm['variant']} ({arm['users']} users)",
            f"{_fmt(arm['value'], spec)} [{_fmt(ci.get('lower'), spec)}, "
            f"{_fmt(ci.get('upper'), spec)}] ({level} {arm['method']} interval)",
        ))  # fmt: skip
    return rows


def power_rows(result: ExperimentResult) -> list[tuple[str, str]]:
    """Per treatment: MDE now, then the users and days the minimum effect needs."""
    spec = ".2%" if result.metric_kind == Experiment.MetricKind.CONVERSION else ".4g"
    rows = []
    for p in result.power or []:
        days = p["days_remaining"]
        text = (
            f"MDE {_fmt(p['mde_relative'], '+.1%')} ({_fmt(p['mde_absolute'], spec)} absolute) "
            f"at {p['power']:.0%} power; minimum effect {p['target_relative']:+.1%}: "
            f"power now {_fmt(p['power_at_target'], '.0%')}, needs "
            f"{_fmt(p['users_needed_control'], ',')} control / "
            f"{_fmt(p['users_needed_treatment'], ',')} {p['variant']} users "
            f"({_fmt(p['users_needed_total'], ',')} exposures, {p['users_total']:,} so far), "
            + ("days remaining n/a" if days is None else f"{days:.1f} days remaining")
        )
        if p.get("note"):
            text += f" ({p['note']})"
        rows.append((f"{p['variant']} power", text))
    return rows


def cuped_rows(result: ExperimentResult) -> list[tuple[str, str]]:
    """Per treatment: the CUPED-adjusted effect beside the unadjusted one."""
    cuped = result.cuped or {}
    if not cuped:
        return []
    if not cuped.get("applied"):
        return [("CUPED", f"not applied: {cuped.get('note', '')}")]
    rows = [(
        "CUPED",
        f"covariate: the metric over {cuped['window_days']} days before exposure "
        f"({cuped['users_with_covariate']:,} users with data), correlation "
        f"{_fmt(cuped['correlation'], '.3f')}, theta {_fmt(cuped['theta'], '.4g')}",
    )]  # fmt: skip
    for c in cuped["comparisons"]:
        ci, raw = c["difference_ci"], c["unadjusted_ci"]
        rows.append((
            f"{c['variant']} CUPED",
            f"effect {_fmt(c['difference'], '+.4g')} [{_fmt(ci['lower'], '+.4g')}, "
            f"{_fmt(ci['upper'], '+.4g')}], p={_fmt(c['p_value'], '.4f')} "
            f"(Holm {_fmt(c['p_value_holm'], '.4f')}); unadjusted "
            f"{_fmt(c['unadjusted_difference'], '+.4g')} [{_fmt(raw['lower'], '+.4g')}, "
            f"{_fmt(raw['upper'], '+.4g')}]; variance reduced by "
            f"{_fmt(c['variance_reduction'], '.1%')}",
        ))  # fmt: skip
    return rows


def result_rows(experiment: Experiment) -> list[tuple[str, str]]:
    """Summary rows (label, value) of the newest results, for the chart page."""
    rows = []
    for result in selectors.experiment_latest_results(experiment):
        rows.append((f"{result.metric} users", result.users))
        rows.append((f"{result.metric} SRM p", result.srm_p_value))
        rows.extend((f"{result.metric} {label}", text) for label, text in arm_rows(result))
        for c in result.comparisons:
            fixed, seq = c["fixed"], c["sequential"]
            ci = fixed["relative_lift_ci"]
            rows.append((
                f"{result.metric} {c['variant']}",
                f"lift {_fmt(fixed['relative_lift'], '+.2%')} "
                f"[{_fmt(ci['lower'], '+.2%')}, {_fmt(ci['upper'], '+.2%')}], "
                f"p={_fmt(fixed['p_value'], '.4f')} (Holm {_fmt(c['p_value_holm'], '.4f')}), "
                f"P(beat control)={_fmt(c['chance_to_beat_control'], '.3f')}, "
                f"sequential p={_fmt(seq['p_value'], '.4f')}",
            ))  # fmt: skip
        rows.extend((f"{result.metric} {label}", text) for label, text in power_rows(result))
        rows.extend((f"{result.metric} {label}", text) for label, text in cuped_rows(result))
        if result.note:
            rows.append((f"{result.metric} note", result.note))
    return rows


@admin.register(Exposure)
class ExposureAdmin(admin.ModelAdmin):
    list_display = ["experiment", "user_id", "variant", "exposed_at"]
    list_filter = ["experiment", "variant"]
    search_fields = ["user_id", "experiment__key"]
    list_select_related = ["experiment"]
    readonly_fields = ["experiment", "user_id", "variant", "exposed_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ExperimentShipment)
class ExperimentShipmentAdmin(admin.ModelAdmin):
    """The audit trail of ships: written by the ship / unship services only."""

    list_display = ["experiment", "variant", "rollout_percent", "shipped_at", "shipped_by",
                    "unshipped_at", "unshipped_by"]  # fmt: skip
    list_filter = ["shipped_at", ("unshipped_at", admin.EmptyFieldListFilter)]
    search_fields = ["experiment__key", "variant", "shipped_by", "unshipped_by"]
    list_select_related = ["experiment"]
    readonly_fields = [f.name for f in ExperimentShipment._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


def _lines(rows: list[tuple[str, str]]) -> str:
    """A result's figures as one "label: value" line each, or "-" when there are none."""
    if not rows:
        return "-"
    return format_html_join(mark_safe("<br>"), "{}: {}", rows)


@admin.register(ExperimentResult)
class ExperimentResultAdmin(admin.ModelAdmin):
    list_display = ["experiment", "metric", "is_primary", "computed_at", "srm_p_value",
                    "srm_mismatch", "note"]  # fmt: skip
    list_filter = ["experiment", "is_primary", "srm_mismatch", "metric_kind"]
    search_fields = ["experiment__key", "metric"]
    list_select_related = ["experiment"]
    readonly_fields = [*(f.name for f in ExperimentResult._meta.fields), "arm_intervals",
                       "power_figures", "cuped_figures"]  # fmt: skip

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="arm estimates")
    def arm_intervals(self, obj: ExperimentResult) -> str:
        return _lines(arm_rows(obj))

    @admin.display(description="power and minimum detectable effect")
    def power_figures(self, obj: ExperimentResult) -> str:
        return _lines(power_rows(obj))

    @admin.display(description="CUPED (pre-exposure adjustment)")
    def cuped_figures(self, obj: ExperimentResult) -> str:
        return _lines(cuped_rows(obj))

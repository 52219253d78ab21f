"""Admin pages: every anomaly model, operator actions, and a chart of each anomaly."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from phase3.admin_actions import ActionPermissionMixin, may_add
from telemetry.admin_charts import ChartAdminMixin, ChartPage
from telemetry.charts import bar_chart, timeseries_chart

from . import selectors, services
from .models import (
    Anomaly,
    DetectionRule,
    DetectionTuning,
    DetectorState,
    DismissedPattern,
    InhibitionRule,
    LearnedModel,
    ResponseExecution,
    ResponsePlaybook,
    RootCauseCandidate,
    Silence,
)
from .secrets import mask_text, mask_url, mask_value, may_see_secrets
from .tunings import tuning_of, tuning_preview, usable_tunings
from .validation import URL_ACTIONS, rule_errors, tuning_errors


class RootCauseInline(admin.TabularInline):
    model = RootCauseCandidate
    fk_name = "anomaly"
    fields = ["rank", "series", "score", "lead_seconds", "evidence"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("series")


class MaskedSecretsMixin:
    """Playbook URLs (and the errors that quote them) masked below the admin role.

    `masked` maps a field to the read-only method shown in its place, as the API masks
    them (secrets.py); searching a masked field is off too, or a viewer could guess a
    token one letter at a time from the number of results.
    """

    masked: dict[str, str] = {}

    def _masking(self, request: HttpRequest, obj=None) -> bool:
        return not may_see_secrets(request)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not self._masking(request, obj):
            return fields
        return [self.masked.get(f, f) for f in fields]

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if not self._masking(request, obj):
            return readonly
        return [*(self.masked.get(f, f) for f in readonly), *self.masked.values()]

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        return shown if may_see_secrets(request) else [self.masked.get(f, f) for f in shown]

    def get_search_fields(self, request):
        fields = super().get_search_fields(request)
        return fields if may_see_secrets(request) else [f for f in fields if f not in self.masked]

    @admin.display(description="target")
    def masked_target(self, obj) -> str:
        return mask_url(obj.target) if obj.action in URL_ACTIONS else obj.target

    @admin.display(description="arguments")
    def masked_arguments(self, obj):
        return mask_value(obj.arguments)

    @admin.display(description="error")
    def masked_error(self, obj) -> str:
        return mask_text(obj.error, [obj.playbook.target])

    @admin.display(description="result")
    def masked_result(self, obj):
        return mask_value(obj.result, [obj.playbook.target])


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


def _apply_each(request, queryset, call, refusal: type[Exception], done: str) -> None:
    """Run `call` on each selected row; report how many it did and why it refused others."""
    count, refused = 0, []
    for obj in queryset:
        try:
            call(obj)
            count += 1
        except refusal as exc:
            refused.append(str(exc))
    if count:
        messages.success(request, done.format(count=count))
    for reason in refused:
        messages.warning(request, reason)


def _operator_action(service, verb: str):
    def run(modeladmin, request, queryset):
        def call(anomaly):
            service(anomaly_id=anomaly.pk, by=request.user.get_username())

        _apply_each(
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
    readonly_fields = [*(f.name for f in Anomaly._meta.fields if f.name != "note"), "explains"]
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


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


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


class PreviewPageMixin(ChartAdminMixin):
    """A saved row's "preview" page: what it would have done over the last week.

    The page reads history and replays it, so it asks for the view permission, not the
    change one: an operator judging how noisy a rule or a tuning is may not edit it.
    """

    chart_path = "preview"
    chart_link_text = "preview 7 days"
    preview_days = 7
    preview_api = ""  # the API path that previews an unsaved row

    @admin.display(description="preview")
    def preview_link(self, obj) -> str:
        if obj.pk is None:
            return f"Save it first (the API previews unsaved ones: {self.preview_api})."
        url = reverse(f"{self.admin_site.name}:{self.chart_url_name}", args=[obj.pk])
        return format_html('<a href="{}">Preview over the last {} days</a>', url, self.preview_days)

    def chart_view(self, request: HttpRequest, pk: int) -> TemplateResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return super().chart_view(request, pk)

    @staticmethod
    def skipped_page(title: str, what: str, errors: dict) -> ChartPage:
        """A row written from a shell that the job skips applies nowhere: previewing it
        would contradict the job (and labels that are not a mapping failed with a 500),
        so the page names the fields, as the API's 400 does."""
        why = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        return ChartPage(
            title, [], [("not previewed", f"the scoring job skips this {what} ({why})")]
        )

    @staticmethod
    def window_row(answer: dict) -> tuple[str, str]:
        return (
            "window",
            f"{answer['since']:%Y-%m-%d %H:%M} to {answer['until']:%Y-%m-%d %H:%M} UTC",
        )


@admin.register(InhibitionRule)
class InhibitionRuleAdmin(admin.ModelAdmin):
    """Declared dependencies: which series' pages a paged source holds back."""

    list_display = [
        "name",
        "source_series",
        "source_labels",
        "target_series",
        "target_labels",
        "equal",
        "enabled",
        "holding_back",
    ]
    list_filter = ["enabled"]
    search_fields = ["name", "source_series", "target_series", "comment"]
    readonly_fields = ["created_at", "holding_back", "series_named"]

    def get_queryset(self, request: HttpRequest):
        return selectors.inhibition_rules_counted(super().get_queryset(request))

    @admin.display(description="series named")
    def series_named(self, rule: InhibitionRule) -> str:
        """What the patterns name, on the rule's page: a typo shows as 0 series."""
        if rule.pk is None or rule.problems():
            return "-"
        preview = selectors.inhibition_rule_preview(rule)
        parts = []
        for side in ("source", "target"):
            names = preview[f"{side}_names"]
            count = preview[f"{side}_series"]
            more = f" and {count - len(names)} more" if count > len(names) else ""
            parts.append(
                f"{side}: {count} series" + (f" ({', '.join(names)}{more})" if names else "")
            )
        return "; ".join(parts) + f"; would hold back now: {preview['would_hold_back']}"

    @admin.display(description="holding back now", ordering="holding")
    def holding_back(self, rule: InhibitionRule) -> str:
        return f"{rule.holding} ongoing anomal{'y' if rule.holding == 1 else 'ies'}"


@admin.register(DetectionTuning)
class DetectionTuningAdmin(PreviewPageMixin, admin.ModelAdmin):
    """Tunings, each with a page that replays the series it applies to over the last week
    under it, under the tuning they have now and at every sensitivity
    (`tunings.tuning_preview`, the scoring job's own detector)."""

    list_display = [
        "name",
        "series_name",
        "labels",
        "sensitivity",
        "direction",
        "enabled",
        "chart_link",
    ]
    list_filter = ["sensitivity", "direction", "enabled"]
    search_fields = ["name", "series_name", "comment"]
    readonly_fields = ["preview_link"]
    chart_url_name = "anomalies_detectiontuning_preview"
    preview_api = "anomaly/tunings/preview"

    def chart_page(self, request: HttpRequest, tuning: DetectionTuning) -> ChartPage:
        title = f"{tuning}: preview over the last {self.preview_days} days"
        if errors := tuning_errors(labels=tuning.labels):
            return self.skipped_page(title, "tuning", errors)
        answer = tuning_preview(tuning, days=self.preview_days)
        rows: list[tuple[str, object]] = [
            self.window_row(answer),
            (
                "series",
                f"{answer['series_matched']} matched, {answer['series_shadowed']} of them "
                "under a more specific tuning",
            ),
            (
                "alerts",
                f"{answer['alerts']} under this tuning, {answer['alerts_now']} under the "
                f"tunings they have now, over {answer['series_previewed']} series replayed",
            ),
        ]
        if answer["capped"]:
            rows.append(("capped", answer["note"]))
        if not tuning.enabled:
            rows.append(("disabled", "the scoring job does not apply it until it is enabled"))
        for row in answer["series"]:
            rows.append((row["series"], _tuning_preview_text(row)))
        chart = None
        if answer["series"]:
            chart = bar_chart(
                "Alerts under this tuning, per series",
                labels=[row["series"] for row in answer["series"]],
                values=[row["alerts"] for row in answer["series"]],
            )
        return ChartPage(title, [chart] if chart else [], rows)


def _tuning_preview_text(row: dict) -> str:
    now = row["tuning_now"] or "defaults"
    levels = ", ".join(f"{k} {v}" for k, v in row["by_sensitivity"].items())
    alerts = "; ".join(
        f"{a['at']:%m-%d %H:%M} {'stalled' if not a['direction'] else ('above' if a['direction'] > 0 else 'below')}"
        f" ({a['observed']:.4g}, expected {a['expected']:.4g})"
        for a in row["alert_points"]
    )
    more = row["alerts"] - len(row["alert_points"])
    text = (
        f"{row['alerts']} alerts (now {row['alerts_now']}: {now}, {row['sensitivity_now']}, "
        f"{row['direction_now']}); by sensitivity: {levels}; replayed from "
        f"{row['warmup_points']} points before the window and {row['points']} in it"
    )
    if alerts:
        text += f". At {alerts}" + (f"; and {more} earlier" if more else "")
    return text


@admin.register(DetectionRule)
class DetectionRuleAdmin(PreviewPageMixin, admin.ModelAdmin):
    """Rules, each with a page that replays it over the last week (`selectors.rule_preview`,
    the same evaluation as the scoring job): how noisy a threshold is, before it pages."""

    list_display = [
        "name",
        "series_name",
        "above",
        "below",
        "min_duration_seconds",
        "severity",
        "enabled",
        "chart_link",
    ]
    list_filter = ["enabled", "severity", "series_name"]
    search_fields = ["name", "series_name"]
    readonly_fields = ["preview_link"]
    chart_url_name = "anomalies_detectionrule_preview"
    preview_api = "anomaly/rules/preview"

    def chart_page(self, request: HttpRequest, rule: DetectionRule) -> ChartPage:
        title = f"{rule}: preview over the last {self.preview_days} days"
        # A row written from a shell may be one the job skips (scoring._usable_rules).
        if errors := rule_errors(labels=rule.labels, above=rule.above, below=rule.below):
            return self.skipped_page(title, "rule", errors)
        answer = selectors.rule_preview(
            series_name=rule.series_name,
            labels=rule.labels,
            above=rule.above,
            below=rule.below,
            min_duration_seconds=rule.min_duration_seconds,
            days=self.preview_days,
        )
        rows: list[tuple[str, object]] = [
            self.window_row(answer),
            ("series matched", answer["series_matched"]),
            ("would have fired", f"{answer['count']} times on {answer['series_firing']} series"),
            ("series data", _preview_source(answer)),
        ]
        if answer["capped"]:
            rows.append(("capped", answer["note"]))
        for row in answer["series"]:
            episodes = row["episodes"]
            text = (
                "never fired"
                if not episodes
                else "; ".join(
                    f"fired {e['fired_at']:%m-%d %H:%M} (breach {e['started_at']:%m-%d %H:%M}"
                    f" to {e['ended_at']:%m-%d %H:%M}{', ongoing' if e['ongoing'] else ''}, "
                    f"peak {e['peak']:.4g})"
                    for e in episodes
                )
            )
            more = row["count"] - len(episodes)
            rows.append((row["series"], text + (f"; and {more} earlier" if more else "")))
        firing = [row for row in answer["series"] if row["count"]]
        chart = None
        if firing:
            chart = bar_chart(
                "Times the rule would have fired, per series",
                labels=[row["series"] for row in firing],
                values=[row["count"] for row in firing],
            )
        return ChartPage(title, [chart], rows)


def _preview_source(answer: dict) -> str:
    if answer["source"] == "raw":
        return "raw samples"
    return f"hourly rollups before {answer['raw_from']:%Y-%m-%d %H:%M} (means), raw samples after"


class WriteOnlySecretsForm(forms.ModelForm):
    """A playbook's form for staff below the admin role: secrets are write-only.

    A URL target, and arguments holding secrets, are shown masked (`secrets.py`) and never
    rendered as stored. Left as shown or blank, the stored value is kept; anything else
    replaces it. So a staff operator allowed to change playbooks can point a webhook at
    its new address without being able to read the old one (before, the field was
    read-only for them). A kept secret stays where it was going: a URL kept while the
    action becomes e-mail or a task, or a task's secret arguments kept while the task
    changes, is refused (the check's message would quote the URL, and the arguments
    would be sent to another task), and the value must be typed again.
    """

    WRITE_ONLY_HELP = (
        "Write-only: shown masked. Type a new value to replace it; leave it as shown (or "
        "empty) to keep the current one."
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        stored = self.instance
        shown = {
            "target": mask_url(stored.target) if stored.action in URL_ACTIONS else None,
            "arguments": mask_value(stored.arguments),
        }
        # Only what masking changes is write-only: plain arguments stay editable as they are.
        self.write_only = {
            name: masked
            for name, masked in shown.items()
            if masked is not None and masked != getattr(stored, name) and name in self.fields
        }
        self.kept: set[str] = set()
        for name, masked in self.write_only.items():
            self.initial[name] = masked
            self.fields[name].required = False
            self.fields[name].help_text = self.WRITE_ONLY_HELP

    def _keep_or_replace(self, name: str):
        value = self.cleaned_data.get(name)
        if name in self.write_only and value in ("", None, self.write_only[name]):
            self.kept.add(name)
            return getattr(self.instance, name)
        return value

    def clean_target(self):
        return self._keep_or_replace("target")

    def clean_arguments(self):
        return self._keep_or_replace("arguments")

    def clean(self):
        cleaned = super().clean()
        stored = self.instance  # the form's values are put on it only after clean()
        action = cleaned.get("action", stored.action)
        if "target" in self.kept and action not in URL_ACTIONS:
            self.add_error(
                "target", f"type the {action} target: the stored URL is not carried over to it"
            )
            # The model's own check runs after this one, and would quote the URL it was given.
            cleaned["target"] = ""
        task = ResponsePlaybook.Action.CELERY_TASK
        moved = (action, cleaned.get("target", stored.target)) != (stored.action, stored.target)
        if "arguments" in self.kept and task in (action, stored.action) and moved:
            self.add_error(
                "arguments",
                "type the arguments again: their secret values stay with the task they were "
                "written for",
            )
            cleaned["arguments"] = self.write_only["arguments"]
        return cleaned


@admin.register(ResponsePlaybook)
class ResponsePlaybookAdmin(ActionPermissionMixin, MaskedSecretsMixin, admin.ModelAdmin):
    list_display = ["name", "action", "target", "min_severity", "series_name", "enabled"]
    list_filter = ["action", "min_severity", "enabled"]
    search_fields = ["name", "target", "series_name"]
    masked = {"target": "masked_target", "arguments": "masked_arguments"}
    actions = ["send_test"]

    @admin.action(
        permissions=["act"], description="Send a test notification to the selected playbooks"
    )
    def send_test(self, request, queryset):
        for playbook in queryset:
            outcome = services.playbook_send_test(
                playbook_id=playbook.pk, by=request.user.get_username()
            )
            if outcome["ok"]:
                messages.success(request, f"{playbook.name}: test sent.")
            else:
                error = outcome["error"]  # quotes the receiver's URL, as page errors do
                if not may_see_secrets(request):
                    error = mask_text(error, [playbook.target])
                messages.warning(request, f"{playbook.name}: {error}")

    def _masking(self, request: HttpRequest, obj=None) -> bool:
        # A new playbook's form keeps its target field: its author is typing the URL. Staff
        # who may change the playbook get the write-only form instead (`get_form`): only
        # those who may merely view it get the masked, read-only display.
        return (
            obj is not None
            and super()._masking(request, obj)
            and not self.has_change_permission(request, obj)
        )

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        if obj is not None and not may_see_secrets(request):
            kwargs["form"] = WriteOnlySecretsForm
        return super().get_form(request, obj, change=change, **kwargs)


@admin.register(ResponseExecution)
class ResponseExecutionAdmin(MaskedSecretsMixin, ReadOnlyAdmin):
    masked = {"error": "masked_error", "result": "masked_result"}

    list_display = [
        "playbook",
        "anomaly",
        "status",
        "attempts",
        "repeats",
        "reminders",
        "notified_effects",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["status", "playbook"]
    search_fields = ["playbook__name", "anomaly__series__name", "error"]
    list_select_related = ["playbook", "anomaly__series"]


@admin.register(DetectorState)
class DetectorStateAdmin(ReadOnlyAdmin):
    list_display = ["series", "last_ts", "points_scored", "updated_at"]
    search_fields = ["series__name"]
    list_filter = ["updated_at"]
    exclude = ["state"]


@admin.register(LearnedModel)
class LearnedModelAdmin(ReadOnlyAdmin):
    list_display = ["name", "windows", "trained_at", "updated_at"]
    search_fields = ["name"]
    list_filter = ["trained_at"]
    exclude = ["blob"]


class SilenceStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("pending", "Not yet started"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        now = timezone.now()
        return {
            "active": queryset.filter(selectors.silence_in_force(now)),
            "pending": queryset.filter(starts_at__gt=now),
            "expired": queryset.filter(ends_at__lte=now),
        }.get(self.value(), queryset)


@admin.register(Silence)
class SilenceAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = [
        "series_pattern",
        "labels",
        "exact_labels",
        "starts_at",
        "ends_at",
        "is_active_now",
        "comment",
        "created_by",
    ]
    list_filter = [SilenceStateFilter, "starts_at"]
    search_fields = ["series_pattern", "comment", "created_by"]
    readonly_fields = ["created_by", "created_at"]
    actions = ["expire"]

    @admin.display(boolean=True, description="active")
    def is_active_now(self, silence: Silence) -> bool:
        return silence.is_active(timezone.now())

    def save_model(self, request, obj: Silence, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)

    @admin.action(
        permissions=["act"], description="Expire selected silences now (alerting resumes)"
    )
    def expire(self, request, queryset):
        _apply_each(
            request,
            queryset,
            lambda silence: services.silence_expire(silence_id=silence.pk),
            services.SilenceStateError,
            "{count} silences expired.",
        )

"""Response pages: playbooks (with a test notification), inhibition rules and the
executions."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from phase3.admin_actions import ActionPermissionMixin

from .. import selectors, services
from ..engine.dependency_mining import MIN_INCIDENTS
from ..models import (
    InhibitionRule,
    ResponseExecution,
    ResponsePlaybook,
)
from ..secrets import mask_target, mask_text, mask_value, may_see_secrets
from ..validation import ALERT_ACTIONS, URL_ACTIONS
from .shared import MaskedSecretsMixin, ReadOnlyAdmin, window_text


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

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.suggestions_view)
        return [
            path("suggestions/", view, name="anomalies_inhibitionrule_suggestions"),
            *super().get_urls(),
        ]

    def suggestions_view(self, request: HttpRequest) -> TemplateResponse:
        """The rules incident history supports, each a link to the add form filled in: the
        admin reads what it ties and saves it, or does not."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        answer = selectors.inhibition_rule_suggestions()
        add = reverse("admin:anomalies_inhibitionrule_add")
        may_add = self.has_add_permission(request)
        rows = []
        for s in answer["suggestions"]:
            fields = {
                "name": s["name"][:100],
                "source_series": s["source_series"],
                "target_series": s["target_series"],
                "equal": json.dumps(s["equal"]),
                "comment": f"Suggested by {s['incidents']} incidents in which the first was "
                f"the likeliest root cause of the second (the other way round: {s['reverse']}).",
            }
            examples = [
                (pk, reverse("admin:anomalies_anomaly_change", args=[pk])) for pk in s["examples"]
            ]
            rows.append((s, f"{add}?{urlencode(fields)}" if may_add else None, examples))
        context = {
            **self.admin_site.each_context(request),
            "title": "Inhibition rules suggested by incidents",
            "opts": self.model._meta,
            "answer": answer,
            "rows": rows,
            "min_incidents": MIN_INCIDENTS,
        }
        return TemplateResponse(request, "admin/anomalies/inhibitionrule/suggestions.html", context)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        """A suggestion's `equal` arrives as JSON in the query string; the form wants the
        list, not the string."""
        initial = super().get_changeform_initial_data(request)
        if isinstance(initial.get("equal"), str):
            try:
                initial["equal"] = json.loads(initial["equal"])
            except ValueError:
                del initial["equal"]
        return initial

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
            "target": mask_target(stored.action, stored.target),
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
        if "target" in self.kept and _secret_kind(action) != _secret_kind(stored.action):
            self.add_error(
                "target",
                f"type the {action} target: the stored {_secret_kind(stored.action)} is not "
                "carried over to it",
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


def _secret_kind(action: str) -> str:
    """What a write-only target holds: a kept one goes only where the same kind goes."""
    if action in URL_ACTIONS:
        return "URL"
    return "routing key" if action in ALERT_ACTIONS else "target"


@admin.register(ResponsePlaybook)
class ResponsePlaybookAdmin(ActionPermissionMixin, MaskedSecretsMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "action",
        "target",
        "min_severity",
        "series_name",
        "active_hours",
        "enabled",
    ]
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

    @admin.display(description="active")
    def active_hours(self, playbook: ResponsePlaybook) -> str:
        if not playbook.limited_hours:
            return "always"
        return window_text(
            playbook.active_weekdays,
            playbook.active_start,
            playbook.active_end,
            playbook.active_time_zone,
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

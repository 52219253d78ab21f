"""What several admin pages share: secrets masked for those who may not see them,
read-only pages for what the job writes, and a preview page beside a change form."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from telemetry.admin_charts import ChartAdminMixin, ChartPage

from ..secrets import mask_target, mask_text, mask_value, may_see_secrets


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
        return mask_target(obj.action, obj.target)

    @admin.display(description="arguments")
    def masked_arguments(self, obj):
        return mask_value(obj.arguments)

    @admin.display(description="error")
    def masked_error(self, obj) -> str:
        return mask_text(obj.error, [obj.playbook.target])

    @admin.display(description="result")
    def masked_result(self, obj):
        return mask_value(obj.result, [obj.playbook.target])


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


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


def apply_each(request, queryset, call, refusal: type[Exception], done: str) -> None:
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


def window_text(weekdays: list[str], start, end, time_zone: str) -> str:
    """A recurring window in words: "saturday, sunday 02:00-04:00 (Europe/Paris)"."""
    days = ", ".join(weekdays) or "every day"
    hours = f" {start:%H:%M}-{end:%H:%M}" if start is not None and end is not None else ""
    return f"{days}{hours} ({time_zone})"

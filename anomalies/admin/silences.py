"""Silence pages: maintenance windows, in force or not."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from phase3.admin_actions import ActionPermissionMixin

from .. import selectors, services
from ..models import (
    Silence,
)
from .shared import apply_each, window_text


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
        "window",
        "is_active_now",
        "comment",
        "created_by",
    ]
    list_filter = [SilenceStateFilter, "starts_at"]
    search_fields = ["series_pattern", "comment", "created_by"]
    readonly_fields = ["created_by", "created_at"]
    actions = ["expire"]

    @admin.display(description="recurs")
    def window(self, silence: Silence) -> str:
        """When a recurring silence mutes, in words: "saturday, sunday 02:00-04:00
        (Europe/Paris)"."""
        if not silence.recurs:
            return "-"
        return window_text(
            silence.weekdays, silence.daily_start, silence.daily_end, silence.time_zone
        )

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
        apply_each(
            request,
            queryset,
            lambda silence: services.silence_expire(silence_id=silence.pk),
            services.SilenceStateError,
            "{count} silences expired.",
        )

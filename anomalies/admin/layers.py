"""Signal layer rules, and a page of every monitored metric's layer."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from .. import selectors
from ..models import SignalLayerRule


@admin.register(SignalLayerRule)
class SignalLayerRuleAdmin(admin.ModelAdmin):
    """What an operator knows about metrics whose names say nothing of their layer."""

    list_display = ["name", "series_name", "labels", "layer", "enabled"]
    list_filter = ["layer", "enabled"]
    search_fields = ["name", "series_name", "comment"]
    readonly_fields = ["created_at"]

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.coverage_view)
        return [
            path("coverage/", view, name="anomalies_signallayerrule_coverage"),
            *super().get_urls(),
        ]

    def coverage_view(self, request: HttpRequest) -> TemplateResponse:
        """Every monitored metric with its layer; the ones with none link to the add form,
        filled in with the name."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        undeclared = request.GET.get("undeclared") == "1"
        answer = selectors.layer_coverage(undeclared_only=undeclared)
        add = reverse("admin:anomalies_signallayerrule_add")
        may_add = self.has_add_permission(request)
        rows = []
        for m in answer["metrics"]:
            unknown = m["layer_by_name"] is None and not m["rules"]
            fields = {"name": m["series_name"][:100], "series_name": m["series_name"]}
            rows.append((m, f"{add}?{urlencode(fields)}" if may_add and unknown else None))
        context = {
            **self.admin_site.each_context(request),
            "title": "Signal layers of the monitored metrics",
            "opts": self.model._meta,
            "answer": answer,
            "rows": rows,
            "undeclared": undeclared,
        }
        return TemplateResponse(request, "admin/anomalies/signallayerrule/coverage.html", context)

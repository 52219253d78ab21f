"""A chart page for one row of any admin: the link column, the URL and the view in one place.

Every system's admin shows Plotly charts (``telemetry.charts``) of a single object on its own
page. Keeping the URL, the staff-only wrapper and the template here means an admin states only
what it draws, and the pages cannot drift apart in how they are reached or protected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

CHART_TEMPLATE = "admin/phase3/chart_page.html"


class ChartPage(NamedTuple):
    """What one chart page shows; chart helpers return None when there is nothing to draw."""

    title: str
    charts: Sequence[str | None]
    rows: Sequence[tuple[str, Any]] = ()


def render_chart_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, page: ChartPage
) -> TemplateResponse:
    """Empty charts are dropped so the page says "No data to draw yet" instead of blank boxes."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": page.title,
        "charts": [chart for chart in page.charts if chart],
        "rows": list(page.rows),
    }
    return TemplateResponse(request, CHART_TEMPLATE, context)


class ChartAdminMixin:
    """Adds ``<pk>/<chart_path>/`` and a "chart" changelist column to a ``ModelAdmin``.

    Set ``chart_url_name`` (tests and templates reverse it as ``admin:<chart_url_name>``) and
    implement ``chart_page``; put the mixin before ``admin.ModelAdmin`` in the bases. The view
    goes through ``admin_site.admin_view``, so it asks for the same login as every admin page.
    """

    chart_url_name: str
    chart_path = "chart"
    chart_link_text = "chart"

    def chart_page(self, request: HttpRequest, obj: Model) -> ChartPage:
        raise NotImplementedError

    def get_chart_queryset(self) -> QuerySet:
        """Override to select related rows (or defer large ones) that the charts need."""
        return self.model._default_manager.all()

    def chart_link_label(self, obj: Model) -> str:
        return self.chart_link_text

    @admin.display(description="chart")
    def chart_link(self, obj: Model) -> str:
        url = reverse(f"{self.admin_site.name}:{self.chart_url_name}", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, self.chart_link_label(obj))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.chart_view)
        return [
            path(f"<int:pk>/{self.chart_path}/", view, name=self.chart_url_name),
            *super().get_urls(),
        ]

    def chart_view(self, request: HttpRequest, pk: int) -> TemplateResponse:
        obj = get_object_or_404(self.get_chart_queryset(), pk=pk)
        return render_chart_page(self, request, self.chart_page(request, obj))

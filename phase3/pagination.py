"""The API's pagination (``DEFAULT_PAGINATION_CLASS``): DRF's limit/offset with a largest page."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset pagination, with ``?limit=`` cut to ``max_limit``.

    Without a ``max_limit`` DRF hands any ``?limit=`` to the database: beyond a 64-bit
    integer SQLite answers "datatype mismatch" and PostgreSQL "bigint out of range", a 500.
    A larger limit is cut to the largest page, as DRF does with ``max_limit`` (an offset
    past the last row already answers an empty page without a query).
    """

    max_limit = 1000

    def paginate_queryset(self, queryset, request, view=None):
        return super().paginate_queryset(with_unique_order(queryset), request, view)


def with_unique_order(queryset):
    """The queryset's ordering with the primary key as the last tie-breaker.

    Pages are cut with LIMIT / OFFSET, and PostgreSQL returns rows that tie on the ORDER
    BY in any order it likes, differently from one page's query to the next. During a
    fleet-wide incident 400 anomalies share one onset; ordered by onset alone, paging
    through them listed two twice and never listed two others.
    """
    if not isinstance(queryset, QuerySet) or queryset.query.combinator:
        return queryset
    ordering = list(queryset.query.order_by)
    if not ordering and queryset.query.default_ordering:
        ordering = list(queryset.query.get_meta().ordering or [])
    if not ordering:
        return queryset  # unordered: DRF already warns; nothing to break the tie of
    names = {str(o).lstrip("-") for o in ordering if isinstance(o, str)}
    if names & {"pk", "id", queryset.model._meta.pk.name}:
        return queryset
    last = ordering[-1]
    descending = isinstance(last, str) and last.startswith("-")
    return queryset.order_by(*ordering, "-pk" if descending else "pk")

"""The API's pagination (``DEFAULT_PAGINATION_CLASS``): DRF's limit/offset with a largest page."""

from __future__ import annotations

from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset pagination, with ``?limit=`` cut to ``max_limit``.

    Without a ``max_limit`` DRF hands any ``?limit=`` to the database: beyond a 64-bit
    integer SQLite answers "datatype mismatch" and PostgreSQL "bigint out of range", a 500.
    A larger limit is cut to the largest page, as DRF does with ``max_limit`` (an offset
    past the last row already answers an empty page without a query).
    """

    max_limit = 1000

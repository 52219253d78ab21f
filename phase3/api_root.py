"""The API's front door and its dead ends.

The API lives under ``/admin/``, so without these views a typo in a URL or a client
opening the API's root fell through to the admin's catch-all and got a 302 to the HTML
login page: a script saw "redirect" where it needed "no such endpoint". Both answer in
JSON now, and only to a caller with a key, like every other endpoint (deny by default:
an unauthenticated caller learns nothing about what exists).
"""

from __future__ import annotations

import re

from django.urls import URLPattern, URLResolver, get_resolver, reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def _readable(pattern_text: str) -> str:
    """``^anomaly/anomalies/(?P<pk>[^/.]+)/?$`` -> ``anomaly/anomalies/{pk}/``."""
    text = pattern_text.replace("^", "").replace("$", "").replace("\\Z", "")
    text = _GROUP.sub(r"{\1}", text)
    text = _CONVERTER.sub(r"{\1}", text)
    return text.replace("/?", "/").replace("\\.", ".").replace("\\", "")


def _walk(patterns, prefix: str = ""):
    for entry in patterns:
        here = prefix + _readable(str(entry.pattern))
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, here)
        elif isinstance(entry, URLPattern) and entry.name != "api-not-found":
            yield "/" + here


def api_paths(prefix: str) -> list[str]:
    """Every route under ``prefix``, as the resolver holds it (format suffixes left out)."""
    found = {
        path
        for path in _walk(get_resolver().url_patterns)
        if path.startswith(prefix) and "{format}" not in path
    }
    return sorted(found)


class ApiRootView(APIView):
    """Where a client starts: the schema, the docs and every route, for any valid key."""

    @extend_schema(
        responses=inline_serializer(
            "ApiRoot",
            {
                "overview": serializers.CharField(),
                "schema": serializers.CharField(),
                "docs": serializers.CharField(),
                "endpoints": serializers.ListField(child=serializers.CharField()),
            },
        )
    )
    def get(self, request: Request) -> Response:
        root = reverse("api-root")
        return Response(
            {
                "overview": request.build_absolute_uri(reverse("overview")),
                "schema": request.build_absolute_uri(reverse("schema")),
                "docs": request.build_absolute_uri(reverse("docs")),
                "endpoints": [p for p in api_paths(root) if p != root],
            }
        )


@extend_schema(exclude=True)
class ApiNotFoundView(APIView):
    """Any other path under the API: a JSON 404, behind the same roles as a real route.

    A write needs the operator role first, as everywhere (a viewer's POST is a 403): no
    path under the API accepts a viewer's write, not even to say that it does not exist.
    """

    def _not_found(self, request: Request, *args, **kwargs) -> Response:
        raise NotFound(
            f"No API endpoint at {request.path}. "
            f"The list is at {reverse('api-root')}, the schema at {reverse('docs')}."
        )

    get = post = put = patch = delete = _not_found

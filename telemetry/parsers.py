"""The API's JSON parser: orjson, with a size cap, for every endpoint of the project.

Ingestion bodies hold up to 100,000 rows, so they are parsed with orjson (several times
faster than ``json``). Every other endpoint uses the same parser (``DEFAULT_PARSER_CLASSES``)
because DRF's own one, on Python's ``json``, turned valid-looking input into 500s:
nesting deeper than the interpreter's recursion limit raises ``RecursionError`` (not the
``ValueError`` DRF turns into a 400), and ``1e309`` becomes an infinite float that an
integer field or a primary-key lookup cannot convert (``OverflowError``) and a JSON column
cannot store. Here both are parse errors (a 400 naming line and column): orjson refuses
numbers beyond a double (as it refuses NaN and lone surrogates), and nesting deeper than
``MAX_DEPTH``, which still parses, is refused before anything encodes it again.

Lives in telemetry, which every app may import, so the ingestion views can name it.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from . import conf

# Far deeper than any document of this API (rule conditions, UI fragments), far shallower
# than Python's recursion limit (1000), which json.dumps, repr and validators share with
# the request's own frames: orjson parses up to 1024 levels.
MAX_DEPTH = 100


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


def nested_deeper_than(data: Any, limit: int) -> bool:
    """Whether lists and objects in `data` nest more than `limit` levels (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class OrjsonParser(BaseParser):
    """JSON bodies parsed by orjson.

    The body is read with a size cap so an oversized upload is refused with a 413 before it
    is parsed: Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``, the cap DRF's own parser had. Not a
    subclass of DRF's JSONParser: DRF reads those through ``request.body``, which applies
    Django's cap to the ingestion bodies too.
    """

    media_type = "application/json"
    renderer_class = JSONRenderer  # the browsable API's raw-data form, as DRF's parser has
    max_depth: int | None = MAX_DEPTH

    def max_bytes(self) -> int | None:
        return settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            raise ParseError("Request body is empty.")
        limit = self.max_bytes()
        body = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(body) > limit:
            raise RequestTooLarge(f"Request body is larger than {limit} bytes.")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        deep = self.max_depth is not None and isinstance(data, dict | list)
        if deep and nested_deeper_than(data, self.max_depth):
            raise ParseError(f"JSON parse error - nested deeper than {self.max_depth} levels")
        return data


class IngestParser(OrjsonParser):
    """For the ingestion batches: a larger cap (``PHASE3_INGEST_MAX_BODY_BYTES``), no depth walk.

    ``telemetry.validation`` checks every field of every row by type without recursing
    (event properties are re-encoded by orjson, which refuses deep nesting itself), so
    walking 100,000 rows again would only cost time.
    """

    max_depth = None

    def max_bytes(self) -> int | None:
        return conf.max_body_bytes()

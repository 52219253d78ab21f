"""Check API responses against the project's generated OpenAPI schema (Zulip's habit).

The schema is what clients code against; a response that drifts from it is a
bug even when the test's own assertions pass.
"""

from __future__ import annotations

import functools
import re

import jsonschema


@functools.cache
def openapi() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _nullable(node):
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema's ``type: [..., "null"]``."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items()}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _operation(path: str, method: str) -> dict:
    for template, item in openapi()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template.rstrip("/")) + "/?$"
        if re.match(pattern, path.split("?")[0]) and method in item:
            return item[method]
    raise AssertionError(f"{method.upper()} {path} is not in the OpenAPI schema")


def assert_matches_schema(response, path: str, method: str = "get") -> None:
    operation = _operation(path, method)
    spec = operation["responses"].get(str(response.status_code))
    assert spec is not None, f"{response.status_code} not documented for {method} {path}"
    body = spec.get("content", {}).get("application/json", {}).get("schema")
    if body is None:
        return
    schema = _nullable({**body, "components": openapi()["components"]})
    jsonschema.validate(response.json(), schema)

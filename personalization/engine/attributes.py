"""Request-time attributes: what the caller says about the user on this page view.

GrowthBook, LaunchDarkly and Statsig SDKs send attributes (country, plan, device,
app version...) with every evaluation; the product cannot learn them from events
(a plan changes today, a device differs between two page views). They arrive with
the configuration request, are checked here, and rule conditions and experiment
targeting test them under their own condition key (``request``), so that a sent
``country`` can never be mistaken for an operator-set profile attribute of the same
name (``attributes``).

The document is flat (string, number or boolean values): conditions compare scalars,
and a nested object would only be a second, untested way to say the same thing. The
limits bound what one request can make the server hash, compare and cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

MAX_ATTRIBUTES = 50
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 256
# Beyond 2**53 an integer is no longer exact as a JSON number (a double); far beyond it,
# float() overflows in the numeric comparisons.
MAX_INTEGER = 2**53

Scalar = str | int | float | bool


# A lone surrogate (`"\ud800"` in JSON) is no character: JSON parsers accept it, but no
# UTF-8 text can hold it, so the answer that echoes it could not be written (a 500).
SURROGATE_PROBLEM = "{what} holds a lone surrogate (\\ud800-\\udfff), which is no character"


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def key_problem(key: Any) -> str | None:
    """Why ``key`` cannot name an attribute (None when it can).

    Keys become query parameter names (``attributes.<key>``) and parts of condition
    documents stored as jsonb, which holds no NUL; control characters there are
    typing accidents, never a country or a plan.
    """
    if not isinstance(key, str) or not key:
        return "an attribute name must be a non-empty string"
    if len(key) > MAX_KEY_LENGTH:
        return f"an attribute name is at most {MAX_KEY_LENGTH} characters"
    if any(unicodedata.category(c) == "Cc" for c in key):
        return "an attribute name holds no control character (NUL, newline...)"
    if _has_surrogate(key):
        return SURROGATE_PROBLEM.format(what="an attribute name")
    return None


def value_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid attribute value (None when it is)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > MAX_VALUE_LENGTH:
            return f"a value is at most {MAX_VALUE_LENGTH} characters"
        if "\x00" in value:
            return "a value holds no NUL character"
        if _has_surrogate(value):
            return SURROGATE_PROBLEM.format(what="a value")
        return None
    if isinstance(value, int):
        if abs(value) > MAX_INTEGER:
            return f"an integer value is at most 2**53 ({MAX_INTEGER}) in magnitude"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "a number must be finite"
    return "a value must be a string, a number or a boolean (the document is flat)"


def attributes_errors(value: Any, *, field: str = "attributes") -> dict[str, list[str]]:
    """Problems with a whole attributes document, by the name a 400 should carry.

    ``field`` for the document itself (not an object, too many keys), ``field.<key>``
    for one attribute, so the caller sees which of fifty was refused.
    """
    if not isinstance(value, Mapping):
        return {field: ["must be an object of name -> string, number or boolean"]}
    errors: dict[str, list[str]] = {}
    if len(value) > MAX_ATTRIBUTES:
        errors[field] = [f"at most {MAX_ATTRIBUTES} attributes (got {len(value)})"]
    for key, item in value.items():
        problem = key_problem(key)
        if problem:
            # A bad key cannot be named safely (a NUL, 5,000 characters): name the document.
            errors.setdefault(field, []).append(problem)
            continue
        problem = value_problem(item)
        if problem:
            errors.setdefault(f"{field}.{key}", []).append(problem)
    return errors


def attributes_digest(attributes: Mapping[str, Scalar]) -> str:
    """A stable short digest of an attributes document, for cache keys.

    Key order does not matter (sorted); types do (``"1"``, ``1`` and ``true`` are
    different documents, as conditions may tell them apart). The empty document has
    the empty digest, so requests without attributes share the entries they had before.
    """
    if not attributes:
        return ""
    text = json.dumps(dict(attributes), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

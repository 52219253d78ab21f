"""Personalization rules: matching a user context and merging UI configuration fragments.

A rule says "for users like this, set these UI keys". Several rules can match
the same user, so resolution must be deterministic and explainable:

- matching rules are applied from the lowest to the highest priority (ties by
  key), each deep-merged into the result, so the highest priority wins a
  conflicting key while non-conflicting keys from every rule survive;
- every leaf key of the result remembers which rule set it (``provenance``), so
  an operator can answer "why does this user see X?".

Conditions are a small declarative document (validated by
:func:`validate_conditions`, whose messages the API returns on a 400)::

    {"persona": ["optimizer"],                  # any of these personas
     "min_confidence": 0.6,                     # persona probability at least this
     "segment": ["power_users"],                # any of these segments
     "attributes": {"plan": "pro", "age_days": {"gte": 30}, "country": {"in": ["DE"]}},
     "request": {"country": {"in": ["FR", "BE"]}, "app_version": {"gte": 5}},
     "variant": {"checkout_flow": ["treatment"]}}   # experiment key -> variants

``attributes`` are the profile's (stored, set by operators); ``request`` are the
attributes the caller sent with this configuration request (``engine.attributes``):
two keys, so a sent ``country`` never stands in for a stored one.

All present conditions must hold; an empty document matches everyone.
``persona``, ``segment`` and each experiment's variants are a string or a list of
strings; ``in``/``not_in`` take a list, ``gt``..``lte`` a number, ``exists`` a
boolean. A stored document that still cannot be evaluated is logged and skipped
by :func:`resolve_config` (it matches nobody) rather than failing every request.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .attributes import key_problem

CONDITION_KEYS = frozenset(
    {"persona", "min_confidence", "segment", "attributes", "request", "variant"}
)
logger = logging.getLogger(__name__)

OPERATORS = frozenset({"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"})


@dataclass(frozen=True)
class RuleSpec:
    key: str
    priority: int
    conditions: Mapping[str, Any]
    action: Mapping[str, Any]
    enabled: bool = True
    starts_at: datetime | None = None
    ends_at: datetime | None = None


@dataclass(frozen=True)
class UserContext:
    user_id: str
    persona: str | None = None
    persona_confidence: float | None = None
    segments: frozenset[str] = frozenset()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    variants: Mapping[str, str] = field(default_factory=dict)  # experiment key -> variant
    # Attributes sent with this request (validated by ``engine.attributes``).
    request: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedConfig:
    config: dict[str, Any]
    provenance: dict[str, str]  # dotted leaf path -> rule key
    matched_rules: list[str]  # in application order


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple | set | frozenset) else [value]


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "exists":
        return (actual is not None) == bool(expected)
    if actual is None:
        return op in ("ne", "not_in")
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op == "in":
        return actual in _as_list(expected)
    if op == "not_in":
        return actual not in _as_list(expected)
    try:
        a, e = float(actual), float(expected)
    except (TypeError, ValueError):
        return False
    return {"gt": a > e, "gte": a >= e, "lt": a < e, "lte": a <= e}[op]


def _attribute_matches(actual: Any, expected: Any) -> bool:
    if isinstance(expected, Mapping):
        return all(_compare(actual, op, value) for op, value in expected.items())
    return actual == expected


def rule_is_live(rule: RuleSpec, now: datetime) -> bool:
    """Enabled and inside its optional [starts_at, ends_at) window."""
    if not rule.enabled:
        return False
    if rule.starts_at is not None and now < rule.starts_at:
        return False
    return not (rule.ends_at is not None and now >= rule.ends_at)


def rule_matches(conditions: Mapping[str, Any], context: UserContext) -> bool:
    """True when every present condition holds for ``context``."""
    personas = conditions.get("persona")
    if personas is not None and context.persona not in _as_list(personas):
        return False
    min_conf = conditions.get("min_confidence")
    if min_conf is not None and (
        context.persona_confidence is None or context.persona_confidence < float(min_conf)
    ):
        return False
    segments = conditions.get("segment")
    if segments is not None and not context.segments.intersection(_as_list(segments)):
        return False
    for name, expected in (conditions.get("attributes") or {}).items():
        if not _attribute_matches(context.attributes.get(name), expected):
            return False
    for name, expected in (conditions.get("request") or {}).items():
        if not _attribute_matches(context.request.get(name), expected):
            return False
    for experiment, variants in (conditions.get("variant") or {}).items():
        if context.variants.get(experiment) not in _as_list(variants):
            return False
    return True


def _strings_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a string or a list of strings (None when it is).

    Matching puts these values in a set (segments) or compares them with the
    stored strings: an object or a number there was accepted, then made every
    user's configuration request fail.
    """
    if isinstance(value, str):
        return None
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return None
    return f"{name} must be a string or a list of strings"


def _operator_problem(name: str, op: str, value: Any) -> str | None:
    """Why ``value`` does not suit attribute operator ``op`` (None when it does)."""
    if op in ("in", "not_in") and not isinstance(value, list | tuple):
        return f"{name}: {op} needs a list of values"
    if op in ("gt", "gte", "lt", "lte") and (
        not isinstance(value, int | float) or isinstance(value, bool)
    ):
        return f"{name}: {op} needs a number"
    if op == "exists" and not isinstance(value, bool):
        return f"{name}: exists needs true or false"
    return None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _scalar_problem(name: str, op: str, value: Any) -> str | None:
    """Request attributes are flat scalars: an object or a null to compare with never matches.

    Caught at save time rather than leaving a rule that silently matches nobody.
    """
    if op in ("in", "not_in"):
        if not all(_is_scalar(v) for v in value):
            return f"{name}: {op} takes strings, numbers or booleans"
    elif op in ("eq", "ne") and not _is_scalar(value):
        return f"{name}: {op} takes a string, a number or a boolean"
    return None


def _section_errors(section: str, value: Any, *, flat: bool) -> list[str]:
    """Problems with an ``attributes`` or ``request`` condition section.

    ``flat``: the section tests request attributes, whose names and values are
    checked like the request's own (``engine.attributes``) so that a condition can
    only name an attribute a request is able to send.
    """
    if not isinstance(value, Mapping):
        return [f"{section} must be an object"]
    errors: list[str] = []
    label = "request attribute" if flat else "attribute"
    for name, expected in value.items():
        if flat and (problem := key_problem(name)):
            errors.append(f"{section}: {problem}")
            continue
        where = f"{label} '{name}'"
        if not isinstance(expected, Mapping):
            if flat and not _is_scalar(expected):
                errors.append(f"{where}: compare with a string, a number, a boolean or operators")
            continue
        bad = [op for op in expected if op not in OPERATORS]
        if bad:
            errors.append(f"{where}: unknown operator {bad}; use {sorted(OPERATORS)}")
        for op, operand in expected.items():
            if op not in OPERATORS:
                continue
            problem = _operator_problem(where, op, operand)
            if problem is None and flat:
                problem = _scalar_problem(where, op, operand)
            if problem:
                errors.append(problem)
    return errors


def uses_request(conditions: Any) -> bool:
    """Whether a conditions document tests request attributes.

    The configuration cache needs to know: such a document can reject a user under one
    set of attributes and accept them under another (see ``services.config``).
    """
    return isinstance(conditions, Mapping) and bool(conditions.get("request"))


def validate_conditions(conditions: Any, *, personas: Sequence[str] = ()) -> list[str]:
    """Human-readable problems with a conditions document (empty list: valid)."""
    if not isinstance(conditions, Mapping):
        return ["must be a JSON object"]
    errors = [f"unknown condition '{k}'" for k in conditions if k not in CONDITION_KEYS]
    if "persona" in conditions:
        problem = _strings_problem("persona", conditions["persona"])
        if problem:
            errors.append(problem)
        else:
            unknown = [p for p in _as_list(conditions["persona"]) if personas and p not in personas]
            if unknown:
                errors.append(f"unknown persona {unknown}; expected some of {list(personas)}")
    if "min_confidence" in conditions:
        value = conditions["min_confidence"]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            errors.append("min_confidence must be a number between 0 and 1")
    if "segment" in conditions:
        problem = _strings_problem("segment", conditions["segment"])
        if problem:
            errors.append(problem)
    errors.extend(_section_errors("attributes", conditions.get("attributes", {}), flat=False))
    errors.extend(_section_errors("request", conditions.get("request", {}), flat=True))
    variants = conditions.get("variant", {})
    if not isinstance(variants, Mapping):
        errors.append("variant must be an object of experiment key -> variant(s)")
    else:
        errors.extend(
            problem
            for key, names in variants.items()
            if (problem := _strings_problem(f"variant '{key}'", names))
        )
    return errors


def matches_or_skip(conditions: Mapping[str, Any], context: UserContext, *, source: str) -> bool:
    """``rule_matches``, but a document it cannot evaluate is logged and matches nobody.

    Validation refuses such documents; this keeps one stored before a check
    existed (or written around the API) from failing every user's request.
    """
    try:
        return rule_matches(conditions, context)
    except Exception:  # any failure of one document must not fail every request
        logger.exception("personalization: skipped %s, its conditions cannot be evaluated", source)
        return False


def deep_merge(
    base: dict[str, Any],
    fragment: Mapping[str, Any],
    *,
    source: str,
    provenance: dict[str, str],
    prefix: str = "",
) -> None:
    """Merge ``fragment`` into ``base`` in place, recording ``source`` for each leaf set.

    Objects merge key by key; anything else (scalars, lists) replaces. When a
    scalar replaces an object (or the reverse) the provenance of the replaced
    subtree is dropped so it never points at keys that no longer exist.
    """
    for key, value in fragment.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value, source=source, provenance=provenance, prefix=f"{path}.")
            continue
        for stale in [p for p in provenance if p == path or p.startswith(f"{path}.")]:
            del provenance[stale]
        if isinstance(value, Mapping):
            base[key] = {}
            deep_merge(base[key], value, source=source, provenance=provenance, prefix=f"{path}.")
            if not value:
                provenance[path] = source
        else:
            base[key] = copy.deepcopy(value)
            provenance[path] = source


def resolve_config(
    rules: Sequence[RuleSpec],
    context: UserContext,
    *,
    now: datetime,
    defaults: Mapping[str, Any] | None = None,
) -> ResolvedConfig:
    """Merge the actions of every live, matching rule; higher priority wins conflicts."""
    config: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    if defaults:
        deep_merge(config, defaults, source="defaults", provenance=provenance)
    matched = [
        r
        for r in rules
        if rule_is_live(r, now) and matches_or_skip(r.conditions, context, source=f"rule {r.key}")
    ]
    matched.sort(key=lambda r: (r.priority, r.key))
    for rule in matched:
        deep_merge(config, rule.action, source=rule.key, provenance=provenance)
    return ResolvedConfig(config, provenance, [r.key for r in matched])

"""Validation of operator-configured documents (rule conditions and actions, experiments).

Shared by the API serializers and the admin forms, so both reject the same input
with the same message naming the field.
"""

from __future__ import annotations

from typing import Any

from telemetry.validation import NUL_PROBLEM, has_nul

from .engine.personas import PERSONAS
from .engine.rules import validate_conditions

METRIC_KINDS = ("conversion", "mean")


def conditions_errors(value: Any) -> list[str]:
    # Every document here is stored as jsonb, which holds no NUL (a 500 on PostgreSQL).
    if has_nul(value):
        return [NUL_PROBLEM]
    return validate_conditions(value, personas=PERSONAS)


def action_errors(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return ["must be a JSON object (a UI configuration fragment)"]
    if not value:
        return ["must set at least one key"]
    if has_nul(value):
        return [NUL_PROBLEM]
    return []


def variants_errors(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) < 2:
        return ["need a list of at least two variants; the first is the control"]
    if has_nul(value):
        return [NUL_PROBLEM]
    errors = []
    names = []
    for i, variant in enumerate(value):
        # A string: exposures store it as text, and the analysis looks arms up by name
        # (a number 1 came back as "1" and was not found).
        name = variant.get("name") if isinstance(variant, dict) else None
        if not isinstance(name, str) or not name.strip():
            errors.append(f"variant {i} needs a non-empty string 'name'")
            continue
        if len(name) > 100:
            errors.append(f"variant {i}: name is longer than 100 characters")
            continue
        names.append(variant["name"])
        weight = variant.get("weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
            errors.append(f"variant '{variant['name']}': weight must be a positive number")
    if len(set(names)) != len(names):
        errors.append("variant names must be unique")
    return errors


# A metric's name (`metric_name`: kind, event and property) keys its result rows, a
# 200-character column: these bounds keep the longest inside it.
MAX_EVENT_NAME = 100
MAX_PROPERTY_NAME = 80


def metric_errors(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return ['must be an object like {"kind": "conversion", "event": "purchase"}']
    if has_nul(value):
        return [NUL_PROBLEM]
    errors = []
    if value.get("kind") not in METRIC_KINDS:
        errors.append(f"kind must be one of {list(METRIC_KINDS)}")
    event = value.get("event", "")
    if not str(event).strip():
        errors.append("event (the event name to measure) is required")
    elif len(str(event)) > MAX_EVENT_NAME:
        # No stored event has a longer name (telemetry's Event.name), and the metric's
        # name, the key of its result history, must fit its column.
        errors.append(f"event is at most {MAX_EVENT_NAME} characters, as event names are")
    if "property" in value and not isinstance(value["property"], str):
        errors.append("property must be a string (a numeric event property to sum)")
    elif len(value.get("property") or "") > MAX_PROPERTY_NAME:
        errors.append(f"property is at most {MAX_PROPERTY_NAME} characters")
    return errors


def guardrails_errors(value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["must be a list of metrics"]
    return [f"guardrail {i}: {e}" for i, m in enumerate(value) for e in metric_errors(m)]


def metric_name(metric: dict) -> str:
    """Stable display name of a metric, also the key of its result history."""
    prop = metric.get("property") or ""
    return f"{metric.get('kind')}:{metric.get('event')}" + (f".{prop}" if prop else "")

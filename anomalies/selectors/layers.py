"""Which signal layer each series has: declared by an operator, or read from its name."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from fnmatch import fnmatchcase

from telemetry.models import Series

from ..engine.signal_layers import Layer, named_layer
from ..matching import most_specific
from ..models import SignalLayerRule
from ..validation import layer_rule_errors

logger = logging.getLogger(__name__)

# Metric names a coverage answer lists: a fleet has hundreds, not this many.
MAX_COVERAGE_NAMES = 2_000


def usable_layer_rules() -> list[SignalLayerRule]:
    """The enabled rules; a row written from a shell that the checks refuse, or with a
    layer the engine does not know, is skipped with a warning rather than failing every
    ranking."""
    usable = []
    for rule in SignalLayerRule.objects.filter(enabled=True):
        errors = layer_rule_errors(series_name=rule.series_name, labels=rule.labels)
        if rule.layer.upper() not in Layer.__members__:
            errors["layer"] = [f"unknown layer {rule.layer!r}"]
        if errors:
            logger.warning("signal layer rule %r skipped: %s", rule.name, errors)
        else:
            usable.append(rule)
    return usable


def declared_layers(
    series: Iterable[Series], rules: list[SignalLayerRule] | None = None
) -> dict[int, tuple[Layer, str]]:
    """The layer an operator declared for each series that has one, by series id, with
    the rule's name (for the evidence an operator reads)."""
    rules = usable_layer_rules() if rules is None else rules
    declared: dict[int, tuple[Layer, str]] = {}
    if not rules:
        return declared
    for s in {s.pk: s for s in series}.values():
        if (rule := most_specific(rules, s.name, s.labels)) is not None:
            declared[s.pk] = (Layer[rule.layer.upper()], rule.name)
    return declared


def layer_coverage(*, undeclared_only: bool = False) -> dict:
    """Each monitored metric name with the layer its name gives it and the rules that
    declare one for its series: where root-cause ranking has no prior to go on, so that
    an operator sees which metrics to declare (`undeclared_only`: those with neither)."""
    rules = usable_layer_rules()
    by_name: dict[str, list[dict]] = {}
    for name, labels in Series.objects.values_list("name", "labels").iterator(chunk_size=5_000):
        by_name.setdefault(name, []).append(labels)
    rows = []
    for name in sorted(by_name):
        labelled = by_name[name]
        by_name_layer = named_layer(name)
        # Only the rules whose pattern takes this name are tried on each of its series.
        candidates = [r for r in rules if fnmatchcase(name, r.series_name)]
        applied: Counter[str] = Counter()
        layers: Counter[str] = Counter()
        for labels in labelled:
            rule = most_specific(candidates, name, labels)
            if rule is not None:
                applied[rule.name] += 1
                layers[rule.layer] += 1
            else:
                layers[(by_name_layer or Layer.OUTCOME).name.lower()] += 1
        if undeclared_only and (by_name_layer is not None or applied):
            continue
        rows.append(
            {
                "series_name": name,
                "series": len(labelled),
                "layer_by_name": None if by_name_layer is None else by_name_layer.name.lower(),
                "rules": dict(applied),
                "layers": dict(layers),
            }
        )
    return {
        "names": len(rows),
        "capped": len(rows) > MAX_COVERAGE_NAMES,
        "metrics": rows[:MAX_COVERAGE_NAMES],
    }

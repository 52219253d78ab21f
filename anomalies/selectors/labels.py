"""Filtering rows by their series' labels in SQL."""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Model, Q, QuerySet, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

M = TypeVar("M", bound=Model)


def with_labels(
    qs: QuerySet[M], labels: dict[str, str], path: str = "series__labels"
) -> QuerySet[M]:
    """The rows whose series carry every label with its value, an empty value meaning the
    label is absent (as `series_matches` reads it). Label keys may hold dots and dashes,
    which a lookup path cannot name: each value is read with a key transform of its own."""
    for i, (name, value) in enumerate(labels.items()):
        alias = f"label_{i}"
        # Cast: compared as it is, SQLite reads the value typed as JSON ("malformed JSON").
        qs = qs.alias(**{alias: Cast(KeyTextTransform(name, path), output_field=TextField())})
        same = Q(**{alias: value})
        if value == "":
            same |= Q(**{f"{alias}__isnull": True})
        qs = qs.filter(same)
    return qs

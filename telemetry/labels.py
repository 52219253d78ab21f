"""How a set of labels names a series: the one place label sets are normalised.

Pure Python (no Django): ingestion's validation, the models and every lookup by labels
use it, so a label set means the same series wherever it is written or read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def labels_normalize(labels: Mapping[str, Any] | None) -> dict[str, Any]:
    """The labels without those whose value is empty.

    Prometheus' rule: a label with an empty value is the same as no label. Without it
    ``cpu{host="a", env=""}`` became a series of its own beside ``cpu{host="a"}`` (an
    exporter leaving a template variable blank split the history in two).
    """
    return {key: value for key, value in (labels or {}).items() if value != ""}


def labels_key(labels: Mapping[str, Any] | None) -> str:
    """The canonical text of a label set (``a=1,b=2``, keys sorted, empty values dropped).

    Series are unique on (name, labels_key): JSON equality is not portable across
    databases, and this text is what every lookup by labels compares.
    """
    clean = labels_normalize(labels)
    return ",".join(f"{key}={clean[key]}" for key in sorted(clean))

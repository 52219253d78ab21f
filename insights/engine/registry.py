"""Model registry, pure side: artefacts as bytes, their checksums, and which score counts.

A fitted model is stored as joblib bytes (compressed) with a SHA-256 checksum, so a
stored artefact that was truncated or altered is refused instead of silently loading a
different model. Every kind of model has one primary metric, measured on held-out data,
and a direction (higher is better for all current kinds); the registry compares versions
on it. A retrained version becomes active only when it is not clearly worse than the
active one, so a bad retrain (for example on a day of broken telemetry) cannot replace a
good model by itself; an admin can still activate any version by hand.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from typing import Any

import joblib

KIND_CLUSTERING = "clustering"
KIND_ANOMALY = "anomaly"
KIND_FEATURE_IMPACT = "feature_impact"

# Primary held-out metric per model kind; higher is better for each.
PRIMARY_METRIC = {
    KIND_CLUSTERING: "silhouette",
    KIND_ANOMALY: "auc",
    KIND_FEATURE_IMPACT: "auc",
}


@dataclass(frozen=True)
class Artefact:
    payload: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.payload)


class ArtefactError(ValueError):
    """The stored bytes are not the model they claim to be."""


def artefact_dump(model: Any, *, compress: int = 3) -> Artefact:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=compress)
    payload = buffer.getvalue()
    return Artefact(payload=payload, sha256=hashlib.sha256(payload).hexdigest())


def artefact_load(payload: bytes, *, sha256: str | None = None) -> Any:
    """Load a model; with ``sha256`` given, refuse bytes whose checksum differs.

    Only load artefacts this system wrote: joblib unpickles, which runs code.
    """
    if sha256 is not None and hashlib.sha256(payload).hexdigest() != sha256:
        raise ArtefactError("artefact checksum mismatch")
    try:
        return joblib.load(io.BytesIO(payload))
    except Exception as exc:  # joblib raises many kinds for corrupt payloads
        raise ArtefactError(f"artefact cannot be loaded: {exc}") from exc


def primary_metric(kind: str, metrics: dict[str, float]) -> tuple[str, float]:
    """(name, value) of the metric that ranks versions of this kind; NaN if missing."""
    if kind not in PRIMARY_METRIC:
        raise ValueError(f"unknown model kind {kind!r}")
    name = PRIMARY_METRIC[kind]
    value = metrics.get(name)
    try:
        value_f = float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        value_f = math.nan
    return name, value_f


def should_activate(
    kind: str,
    new_metrics: dict[str, float],
    active_metrics: dict[str, float] | None,
    *,
    tolerance: float = 0.02,
) -> bool:
    """Activate a new version unless it is worse than the active one by > tolerance.

    With no active version, the new one is activated even when its metric cannot be
    measured (an anomaly model where no incident is known yet): a model is needed to
    work at all, and its score shows as unmeasured rather than invented. Otherwise an
    unmeasurable new version never replaces a measured active one, and a measured one
    always replaces an unmeasured one.
    """
    _, new = primary_metric(kind, new_metrics)
    old = primary_metric(kind, active_metrics)[1] if active_metrics is not None else math.nan
    if active_metrics is None:
        return True
    if not math.isfinite(new):
        return not math.isfinite(old)
    if not math.isfinite(old):
        return True
    return new >= old - tolerance


def clean_metrics(metrics: dict[str, float]) -> dict[str, float | None]:
    """JSON-safe metrics: NaN/inf become None (JSON has no NaN), values become floats."""
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        f = float(value)
        out[key] = f if math.isfinite(f) else None
    return out

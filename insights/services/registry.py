"""The model registry: every training run becomes a new version with its held-out scores.

A new version is activated automatically only when its primary held-out metric is not
clearly worse than the active version's (``engine.registry.should_activate``); otherwise
it is kept, inactive, with a note, for an admin to compare and activate by hand.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from insights.engine import registry as engine_registry
from insights.models import MLModel

# Artefacts of the newest versions (and the active one) are kept for rollback; older
# versions keep their row and metrics for comparison but drop the bytes. A daily
# state model is about 0.6 MB: without pruning, a year of them is 200 MB.
KEEP_ARTEFACTS = 20


class ArtefactPruned(ValueError):
    """This version's artefact was pruned: it can be compared, not activated."""


def mlmodel_register(
    *,
    name: str,
    kind: str,
    fitted: Any,
    metrics: dict[str, float],
    parameters: dict[str, Any],
    training_rows: int,
    holdout_rows: int,
    trained_at: datetime | None = None,
) -> MLModel:
    """Store a fitted model as the next version of ``name``; activate it if it deserves.

    ``trained_at`` is the end of the data it learnt from when a job ran for a given
    time (``now=``); retraining schedules count from it. Defaults to the current time.
    """
    if kind not in MLModel.Kind.values:
        raise ValueError(f"unknown model kind {kind!r}")
    artefact = engine_registry.artefact_dump(fitted)
    metric_name, score = engine_registry.primary_metric(kind, metrics)
    clean = engine_registry.clean_metrics(metrics)
    with transaction.atomic():
        # Two trainings of one name must not both become active nor take the same version.
        # Locking the active row alone did not serialise them when no version was active
        # (nothing to lock): both read "no active version, last version N" and the second
        # failed on the unique constraints. The per-name lock covers that case too.
        _lock_versions_of(name)
        active = MLModel.objects.select_for_update().filter(name=name, is_active=True).first()
        last = MLModel.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0
        activate = engine_registry.should_activate(
            kind, metrics, active.metrics if active else None
        )
        notes = ""
        if not activate:
            notes = (
                f"not activated: held-out {metric_name} "
                f"{'unmeasurable' if score != score else f'{score:.3f}'}"
                + (f" vs active v{active.version} {active.primary_score}" if active else "")
            )
        if activate and active:
            active.is_active = False
            active.save(update_fields=["is_active"])
        created = MLModel.objects.create(
            name=name,
            kind=kind,
            version=last + 1,
            trained_at=trained_at or timezone.now(),
            training_rows=training_rows,
            holdout_rows=holdout_rows,
            parameters=parameters,
            metrics=clean,
            primary_metric=metric_name,
            primary_score=clean.get(metric_name),
            artefact=artefact.payload,
            artefact_sha256=artefact.sha256,
            artefact_size=artefact.size,
            is_active=activate,
            activated_at=timezone.now() if activate else None,
            notes=notes,
        )
        _prune_artefacts(name)
    return created


def _prune_artefacts(name: str) -> int:
    keep = (
        MLModel.objects.filter(name=name)
        .order_by("-version")
        .values_list("pk", flat=True)[:KEEP_ARTEFACTS]
    )
    return (
        MLModel.objects.filter(name=name, is_active=False, artefact_size__gt=0)
        .exclude(pk__in=list(keep))
        .update(
            artefact=b"",
            artefact_size=0,
            notes=f"artefact pruned (older than the newest {KEEP_ARTEFACTS} versions)",
        )
    )


def _lock_versions_of(name: str) -> None:
    """Serialise registrations and activations of one model name until the transaction ends.

    A PostgreSQL advisory lock keyed by the name (other databases serialise writers anyway).
    """
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(
        hashlib.sha1(f"insights.registry:{name}".encode()).digest()[:8], "big", signed=True
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def mlmodel_activate(*, model: MLModel) -> MLModel:
    """Make this version the active one of its name (rollback or promotion by an admin)."""
    with transaction.atomic():
        _lock_versions_of(model.name)
        # Read again under the lock: a registration may have pruned this version's artefact
        # since the caller loaded it, and an active version without bytes cannot be loaded.
        current = MLModel.objects.select_for_update().get(pk=model.pk)
        if current.artefact_size == 0:
            raise ArtefactPruned(f"{model} has no artefact left; retrain instead")
        MLModel.objects.select_for_update().filter(name=model.name, is_active=True).exclude(
            pk=model.pk
        ).update(is_active=False)
        MLModel.objects.filter(pk=model.pk).update(is_active=True, activated_at=timezone.now())
    model.refresh_from_db()
    return model


def mlmodel_load(model: MLModel) -> Any:
    """The fitted object of a stored version, checked against its checksum."""
    return engine_registry.artefact_load(bytes(model.artefact), sha256=model.artefact_sha256)

"""The model registry: every training run becomes a new version with its held-out scores.

Whether a new version replaces the active one is decided by
``engine.registry.decide_activation``: a version whose inputs differ from the active
one's is activated without comparing scores (the active one cannot score them); one
scored with the active version on rows neither was trained on is judged on that paired
comparison; otherwise on each version's own held-out score. The rule and the reason are
stored on the version (``activation_rule``, ``activation_reason``, ``comparison``); a
refused version is kept, inactive, for an admin to compare and activate by hand.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from insights.engine import registry as engine_registry
from insights.models import MLModel

logger = logging.getLogger(__name__)

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
    inputs: Sequence[str] | None = None,
    paired: engine_registry.PairedComparison | None = None,
    champion: MLModel | None = None,
) -> MLModel:
    """Store a fitted model as the next version of ``name``; activate it if it deserves.

    ``trained_at`` is the end of the data it learnt from when a job ran for a given
    time (``now=``); retraining schedules count from it. Defaults to the current time.

    ``inputs`` are the feature names (or watched metrics) the model reads, in order;
    without them they are read from ``parameters["columns"]`` or ``["features"]``. A
    version whose inputs differ from the active one's is activated without a score
    comparison. ``paired`` is the caller's comparison of this model with ``champion``
    on rows neither was trained on; it counts only if ``champion`` is still the active
    version under the registry's lock (another registration may have replaced it).
    """
    if kind not in MLModel.Kind.values:
        raise ValueError(f"unknown model kind {kind!r}")
    if inputs is not None:
        parameters = {**parameters, "inputs": list(inputs)}
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
        fair = paired if (active and champion and champion.pk == active.pk) else None
        decision = engine_registry.decide_activation(
            kind,
            metrics,
            active.metrics if active else None,
            new_inputs=inputs_of(parameters),
            active_inputs=inputs_of(active.parameters) if active else None,
            paired=fair,
        )
        activate = decision.activate
        reason = decision.reason
        if active is not None:
            reason = f"against active v{active.version}: {reason}"
            if activate:
                reason += f"; v{active.version} stays available for rollback"
        notes = ""
        if not activate:
            notes = (
                f"not activated: held-out {metric_name} "
                f"{'unmeasurable' if score != score else f'{score:.3f}'}"
                + (f" vs active v{active.version} {active.primary_score}" if active else "")
            )
        comparison = {}
        if fair is not None:
            comparison = {**fair.as_dict(), "champion_version": active.version}
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
            activation_rule=decision.rule,
            activation_reason=reason,
            comparison=comparison,
        )
        _prune_artefacts(name)
    return created


def inputs_of(parameters: dict[str, Any] | None) -> list[str] | None:
    """The inputs a version reads, as recorded in its parameters (None if not recorded).

    ``inputs`` when the caller gave them, else the state model's ``columns`` or the
    segmentation and feature-impact models' ``features``.
    """
    for key in ("inputs", "columns", "features"):
        value = (parameters or {}).get(key)
        if isinstance(value, list):
            return [str(v) for v in value]
    return None


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


_AT_REGISTRATION = "; at registration: "


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
        now = timezone.now()
        reason = f"activated by hand at {now:%Y-%m-%d %H:%M} UTC (rollback or promotion)"
        registered = current.activation_reason
        if current.activation_rule == MLModel.ActivationRule.MANUAL:
            # Activated by hand before: keep the registration's reason, not a chain of
            # every earlier rollback (it grew with each one).
            registered = registered.partition(_AT_REGISTRATION)[2]
        if registered:
            reason += f"{_AT_REGISTRATION}{registered}"
        MLModel.objects.filter(pk=model.pk).update(
            is_active=True,
            activated_at=now,
            activation_rule=MLModel.ActivationRule.MANUAL,
            activation_reason=reason,
        )
    model.refresh_from_db()
    return model


def mlmodel_load(model: MLModel) -> Any:
    """The fitted object of a stored version, checked against its checksum."""
    return engine_registry.artefact_load(bytes(model.artefact), sha256=model.artefact_sha256)


def champion_for_pairing(champion: MLModel | None, feature_names: list[str]) -> Any | None:
    """The active version's fitted object, if a retrain on `feature_names` can be paired
    with it: None when there is none, it reads other features (the registry does not
    compare scores then) or its artefact cannot be read (pruned, tampered)."""
    if champion is None or champion.parameters.get("features") != list(feature_names):
        return None
    try:
        return mlmodel_load(champion)
    except (engine_registry.ArtefactError, ValueError, TypeError, AttributeError) as exc:
        logger.warning("paired comparison: cannot load %s: %s", champion, exc)
        return None

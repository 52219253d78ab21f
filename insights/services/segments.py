"""Recompute user segments: telemetry events -> segmentation engine -> registry + segments."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from insights import inputs
from insights.engine import behaviour, segmentation
from insights.engine import registry as engine_registry
from insights.engine.registry import ArtefactError, PairedComparison
from insights.model_names import SEGMENT_MODEL
from insights.models import MLModel, Segment, SegmentSnapshot
from insights.services.errors import InsufficientData
from insights.services.registry import champion_for_pairing, mlmodel_load, mlmodel_register
from telemetry.selectors import events_frame

MIN_USERS = 40

logger = logging.getLogger(__name__)


def _frame_slice(frame: dict[str, np.ndarray], start: float, end: float) -> dict[str, np.ndarray]:
    mask = (frame["ts"] >= start) & (frame["ts"] < end)
    return {key: values[mask] for key, values in frame.items()}


def _lineage_of(previous: Segment | None) -> int | None:
    """The line a matched segment continues (older rows may predate the field)."""
    if previous is None:
        return None
    return previous.lineage or previous.pk


def _scaler_of(fitted: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and scale of a segmentation pipeline's standardiser (None if it has none)."""
    scaler = getattr(fitted, "named_steps", {}).get("scale")
    if scaler is None or not hasattr(scaler, "mean_"):
        return None
    return np.asarray(scaler.mean_, dtype=float), np.asarray(scaler.scale_, dtype=float)


def _match_previous(
    previous_model: MLModel | None,
    previous: list[Segment],
    result: segmentation.SegmentationResult,
) -> dict[int, Segment]:
    """{profile index: previous segment it continues}, close pairs only.

    The previous centroids are moved into the new version's standardised space with the
    previous version's scaler (read from its artefact) so a change of scaler is not
    mistaken for movement; when that artefact is gone the centroids are compared as stored.
    """
    current = np.array([p.centroid for p in result.profiles])
    prev_centroids = [p.centroid for p in previous]
    if not previous or any(len(c) != current.shape[1] for c in prev_centroids):
        return {}
    centroids = np.array(prev_centroids, dtype=float)
    spreads = np.array([np.nan if p.spread is None else p.spread for p in previous])
    new_scaler = _scaler_of(result.model)
    old_scaler = None
    if previous_model is not None and previous_model.artefact_size:
        try:
            old_scaler = _scaler_of(mlmodel_load(previous_model))
        except (ArtefactError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("segment matching: cannot read %s's scaler: %s", previous_model, exc)
    if old_scaler and new_scaler and len(old_scaler[0]) == current.shape[1]:
        centroids, spreads = segmentation.restandardise(
            centroids,
            spreads,
            from_mean=old_scaler[0],
            from_scale=old_scaler[1],
            to_mean=new_scaler[0],
            to_scale=new_scaler[1],
        )
    pairs = segmentation.match_segments(
        centroids,
        current,
        previous_spread=spreads,
        current_spread=[p.spread for p in result.profiles],
    )
    return {cur: previous[prev] for cur, prev in pairs.items()}


# At most this many unseen users are compared: the silhouette costs n² per resample.
PAIRED_MAX_USERS = 1000


def _paired_with_active(
    champion: MLModel | None,
    result: segmentation.SegmentationResult,
    matrix: behaviour.BehaviourMatrix,
    end: datetime,
    *,
    random_state: int,
) -> PairedComparison | None:
    """Both versions' silhouette on users neither was trained on.

    Those are the new version's held-out users first seen after the active version's
    window ended (its ``trained_at``): it cannot have trained on them, and the new one
    kept them out. None when there is no active version to compare with, it reads other
    features (the registry then does not compare scores) or its artefact is unreadable.
    """
    old = champion_for_pairing(champion, result.feature_names)
    if old is None:
        return None
    holdout = result.holdout_index
    first_seen = inputs.users_first_seen(set(matrix.user_ids[holdout]), end)
    after = champion.trained_at.timestamp()
    rows = np.array(
        [i for i in holdout if first_seen.get(matrix.user_ids[i], -np.inf) > after], dtype=int
    )
    if len(rows) > PAIRED_MAX_USERS:
        rng = np.random.default_rng(random_state)
        rows = np.sort(rng.choice(rows, PAIRED_MAX_USERS, replace=False))
    if len(rows) < engine_registry.MIN_PAIRED_ROWS:
        return PairedComparison.empty(len(rows))  # the registry falls back, and says why
    x, new = matrix.features[rows], result.model
    # Each pipeline is scored in its own standardised space, on the same users.
    return engine_registry.paired_silhouette(
        new[:-1].transform(x),
        new.predict(x),
        old[:-1].transform(x),
        old.predict(x),
        random_state=random_state,
    )


def segments_recompute(
    *,
    days: int = 28,
    trailing_days: int = 3,
    trend_days: int = 28,
    k_max: int = 8,
    now: datetime | None = None,
    random_state: int = 0,
) -> dict[str, int]:
    """Segment users active in the last ``days`` and record daily segment sizes.

    Sizes over time: for each of the last ``trend_days`` days, the users active in the
    ``trailing_days`` before it are assigned by the new model, so a trend exists from
    the first run and is measured with one model only (comparing labels of different
    models would compare unrelated groups). Short trailing windows overlap less, which
    leaves the trend test more independent points (see ``segment_trend``).
    """
    if days < 2 or trailing_days < 1 or trend_days < 0 or k_max < 2:
        raise ValueError("days >= 2, trailing_days >= 1, trend_days >= 0 and k_max >= 2")
    end = now or timezone.now()
    start = end - timedelta(days=days)
    read_from = end - timedelta(days=max(days, trend_days + trailing_days))
    frame = events_frame(start=read_from, end=end, names=inputs.EVENT_NAMES_FOR_SEGMENTS)
    matrix = behaviour.behaviour_matrix(
        _frame_slice(frame, start.timestamp(), end.timestamp()), window_days=days
    )
    n_users = len(matrix.user_ids)
    if n_users < MIN_USERS:
        raise InsufficientData(f"{n_users} active users in {days} days; need {MIN_USERS}")
    k_range = range(2, min(k_max, max(2, n_users // 20)) + 1)
    result = segmentation.segment_users(
        matrix.features, matrix.feature_names, k_range=k_range, random_state=random_state
    )
    metrics = dict(result.metrics)
    kinds = inputs.demo_user_kinds(matrix.user_ids)
    if len(kinds) >= n_users // 2:
        known = np.array([u in kinds for u in matrix.user_ids])
        truth = [kinds[u] for u in matrix.user_ids[known]]
        agree = segmentation.agreement_with_truth(result.labels[known], truth)
        metrics["adjusted_rand_vs_demo_kinds"] = agree["adjusted_rand"]

    # Daily shares, measured by the new model on trailing windows.
    days_back = [
        end - timedelta(days=i)
        for i in range(trend_days, -1, -1)
        if end - timedelta(days=i + trailing_days) >= read_from
    ]
    shares_by_day: list[np.ndarray] = []
    sizes_by_day: list[np.ndarray] = []
    for day_end in days_back:
        part = _frame_slice(
            frame, (day_end - timedelta(days=trailing_days)).timestamp(), day_end.timestamp()
        )
        m = behaviour.behaviour_matrix(part, window_days=trailing_days)
        shares = segmentation.segment_shares(result.model, m.features, result.k)
        shares_by_day.append(shares)
        sizes_by_day.append(np.round(shares * len(m.user_ids)).astype(int))
    day_index = np.arange(len(days_back), dtype=float)
    champion = MLModel.objects.filter(name=SEGMENT_MODEL, is_active=True).first()
    paired = _paired_with_active(champion, result, matrix, end, random_state=random_state)

    with transaction.atomic():
        previous_model = (
            MLModel.objects.filter(name=SEGMENT_MODEL, is_active=True).defer("artefact").first()
        )
        model = mlmodel_register(
            name=SEGMENT_MODEL,
            kind=MLModel.Kind.CLUSTERING,
            fitted=result.model,
            metrics=metrics,
            parameters={**result.params, "days": days, "features": list(result.feature_names)},
            training_rows=result.n_train,
            holdout_rows=result.n_holdout,
            trained_at=end,
            paired=paired,
            champion=champion,
        )
        previous = list(previous_model.segments.all()) if previous_model else []
        matches = _match_previous(previous_model, previous, result)
        snapshots = []
        for i, profile in enumerate(result.profiles):
            trend = segmentation.segment_trend(
                day_index, [s[profile.label] for s in shares_by_day], overlap=trailing_days
            )
            segment = Segment.objects.create(
                model=model,
                label=profile.label,
                name=profile.name[:200],
                size=profile.size,
                share=profile.share,
                distinguishing=[
                    {
                        "feature": d.feature,
                        "direction": d.direction,
                        "effect": d.effect,
                        "z": d.z,
                        "segment_mean": d.segment_mean,
                        "population_mean": d.population_mean,
                    }
                    for d in profile.distinguishing
                ],
                centroid=list(profile.centroid),
                spread=profile.spread if np.isfinite(profile.spread) else None,
                recommendations=segmentation.recommend_targeting(profile),
                trend=trend.direction,
                trend_slope_per_day=trend.slope_per_day if trend.points >= 3 else None,
                trend_p_value=trend.p_value if trend.points >= 3 else None,
                previous=matches.get(i),
                lineage=_lineage_of(matches.get(i)),
            )
            if segment.lineage is None:
                # A new line starts here: its identity is this segment's own id.
                segment.lineage = segment.pk
                segment.save(update_fields=["lineage"])
            snapshots += [
                SegmentSnapshot(
                    segment=segment,
                    day=day_end.date(),
                    size=int(sizes[profile.label]),
                    share=float(shares[profile.label]),
                )
                for day_end, shares, sizes in zip(
                    days_back, shares_by_day, sizes_by_day, strict=True
                )
            ]
        SegmentSnapshot.objects.bulk_create(snapshots)
    return {
        "users": n_users,
        "segments": result.k,
        "snapshots": len(snapshots),
        "model_version": model.version,
        "activated": int(model.is_active),
    }

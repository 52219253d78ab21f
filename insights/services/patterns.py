"""Unusual multivariate system states: retrain when due, find episodes, store patterns."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from insights import inputs
from insights.engine import performance_patterns as engine
from insights.engine import registry as engine_registry
from insights.model_names import STATE_MODEL
from insights.models import MLModel, StatePattern
from insights.services.errors import InsufficientData
from insights.services.registry import mlmodel_load, mlmodel_register
from telemetry.selectors import to_datetime


def state_patterns_refresh(
    *,
    days: int = 28,
    step_seconds: int = 300,
    retrain_after_hours: float = 24.0,
    force_retrain: bool = False,
    now: datetime | None = None,
    random_state: int = 0,
) -> dict[str, int]:
    """Score the last ``days`` with the active state model and store recurring patterns.

    The forest is retrained at most every ``retrain_after_hours`` (or when the watched
    metrics changed): hourly runs reuse the active version, so the registry holds one
    version per real retraining, not one per hour. A retrained version is scored on
    its held-out later part against the known incident windows.
    """
    if days < 1 or step_seconds < 60 or retrain_after_hours < 0:
        raise ValueError("days >= 1, step_seconds >= 60 and retrain_after_hours >= 0")
    end = now or timezone.now()
    start = end - timedelta(days=days)
    history = inputs.state_history(start, end, step_seconds=step_seconds)
    if len(history.columns) < 2:
        raise InsufficientData(f"only {len(history.columns)} system metric(s) available")
    active = MLModel.objects.filter(name=STATE_MODEL, is_active=True).first()
    state_model = mlmodel_load(active) if active else None
    # Due from the newest *training*, active or not: a retrain the registry kept inactive
    # (worse than the active version) would otherwise leave the active version's age past
    # the interval, and every hourly run would fit and store yet another forest.
    latest = (
        MLModel.objects.filter(name=STATE_MODEL)
        .order_by("-version")
        .only("trained_at", "parameters")
        .first()
    )
    watches_other_metrics = state_model is not None and (
        tuple(state_model.columns) != history.columns
        and tuple(latest.parameters.get("columns") or ()) != history.columns
    )
    due = (
        force_retrain
        or state_model is None
        or watches_other_metrics
        or latest is None
        or end - latest.trained_at >= timedelta(hours=retrain_after_hours)
    )
    fit = metrics = paired = None
    if due:
        try:
            fit = engine.fit_state_model(
                history.ts, history.states, history.columns, random_state=random_state
            )
        except ValueError as exc:
            raise InsufficientData(str(exc)) from exc
        metrics = engine.evaluate_against_incidents(
            fit.holdout_ts,
            fit.holdout_scores,
            fit.model.threshold,
            inputs.incident_windows(start, end),
        )
        if state_model is not None and tuple(state_model.columns) == history.columns:
            paired = _paired_with_active(active, state_model, fit, history, start, end)
    with transaction.atomic():
        trained = None
        if fit is not None and metrics is not None:
            trained = mlmodel_register(
                name=STATE_MODEL,
                kind=MLModel.Kind.ANOMALY,
                fitted=fit.model,
                metrics=metrics,
                parameters={
                    **fit.params,
                    "days": days,
                    "step_seconds": step_seconds,
                    "columns": list(history.columns),
                    "train_end_ts": fit.train_end_ts,
                },
                training_rows=fit.n_train,
                holdout_rows=fit.n_holdout,
                trained_at=end,
                paired=paired,
                champion=active,
            )
            if trained.is_active:
                active, state_model = trained, fit.model
        if active is None or state_model is None:
            raise InsufficientData("no active state model")
        if tuple(state_model.columns) != history.columns:
            raise InsufficientData("the active state model watches different metrics")
        episodes = engine.find_episodes(
            history.ts, history.states, state_model, step_seconds=step_seconds
        )
        patterns = engine.group_patterns(episodes, history.columns)
        StatePattern.objects.filter(model=active).delete()
        StatePattern.objects.bulk_create(
            [
                StatePattern(
                    model=active,
                    label=p.label,
                    description=p.describe(),
                    signature=dict(zip(p.columns, p.signature, strict=True)),
                    episodes=[[e.start_ts, e.end_ts, e.peak_score] for e in p.episodes],
                    episode_count=p.count,
                    first_seen=to_datetime(p.episodes[0].start_ts),
                    last_seen=to_datetime(p.episodes[-1].end_ts),
                    weekly_hour=p.weekly_hour,
                )
                for p in patterns
            ]
        )
    return {
        "states": len(history.ts),
        "episodes": len(episodes),
        "patterns": len(patterns),
        "retrained": int(trained is not None),
        "model_version": active.version,
    }


def _paired_with_active(
    active: MLModel,
    state_model: engine.StateModel,
    fit: engine.StateModelResult,
    history: inputs.StateHistory,
    start: datetime,
    end: datetime,
) -> engine_registry.PairedComparison:
    """Both forests' AUC against the known incidents on states neither was trained on.

    Those are the states after the later of the two training ends: the retrain's own
    held-out part, less any the active version trained on (none when it was trained on an
    earlier window of the same length). Versions stored before ``train_end_ts`` was
    recorded count their whole window as trained on. Blocks of an hour are resampled
    together: neighbouring states are near twins, and resampling them one by one would
    understate the noise.
    """
    active_end = active.parameters.get("train_end_ts", active.trained_at.timestamp())
    unseen = history.ts > max(fit.train_end_ts, float(active_end))
    ts, states = history.ts[unseen], history.states[unseen]
    truth = engine.in_windows(ts, inputs.incident_windows(start, end))
    return engine_registry.paired_auc(
        truth,
        fit.model.scores(states),
        state_model.scores(states),
        block=max(1, 3600 // history.step_seconds),
    )

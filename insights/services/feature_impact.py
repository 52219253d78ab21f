"""Recompute feature impact for one outcome: cohort -> odds ratios + model -> registry."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone

from insights import inputs
from insights.engine import behaviour
from insights.engine import feature_impact as engine
from insights.engine import registry as engine_registry
from insights.engine.registry import PairedComparison
from insights.model_names import feature_impact_model_name
from insights.models import FeatureImpact, MLModel
from insights.services.errors import InsufficientData
from insights.services.registry import champion_for_pairing, mlmodel_register

MIN_USERS = 60

logger = logging.getLogger(__name__)


def _paired_with_active(
    champion: MLModel | None,
    fit: engine.ImpactModelResult,
    cohort: behaviour.Cohort,
    y: np.ndarray,
    end: datetime,
    *,
    random_state: int,
) -> PairedComparison | None:
    """Both versions' AUC on users neither was trained on.

    The active version judged users first seen up to its window's end less its horizon;
    the new one's held-out users first seen after that were in neither training set.
    None when there is no active version, it reads other features (the registry does
    not compare scores then) or its artefact cannot be read.
    """
    old = champion_for_pairing(champion, fit.feature_names)
    if old is None:
        return None
    horizon = float(champion.parameters.get("horizon_days", 0.0))
    judged_until = (champion.trained_at - timedelta(days=horizon)).timestamp()
    holdout = fit.holdout_index
    first_seen = inputs.users_first_seen(set(cohort.user_ids[holdout]), end)
    rows = np.array(
        [i for i in holdout if first_seen.get(cohort.user_ids[i], -np.inf) > judged_until],
        dtype=int,
    )
    if len(rows) < engine_registry.MIN_PAIRED_ROWS:
        return PairedComparison.empty(len(rows))  # the registry falls back, and says why
    x = cohort.usage[rows]
    return engine_registry.paired_auc(
        y[rows],
        fit.model.predict_proba(x)[:, 1],
        old.predict_proba(x)[:, 1],
        random_state=random_state,
    )


def feature_impact_recompute(
    *,
    outcome: str = "retention",
    days: int = 28,
    observe_days: float = 3.0,
    horizon_days: float = 7.0,
    model_kind: str = "logistic",
    now: datetime | None = None,
    random_state: int = 0,
) -> dict[str, int]:
    """How each feature's early use relates to ``outcome`` for users first seen recently."""
    if outcome not in behaviour.OUTCOMES:
        raise ValueError(f"outcome must be one of {behaviour.OUTCOMES}")
    if model_kind not in engine.MODEL_KINDS:
        raise ValueError(f"model_kind must be one of {engine.MODEL_KINDS}")
    if days <= horizon_days:
        raise ValueError("days must be longer than horizon_days")
    end = now or timezone.now()
    start = end - timedelta(days=days)
    cohort = inputs.cohort_between(start, end, observe_days=observe_days, horizon_days=horizon_days)
    y = cohort.outcome(outcome)
    if len(y) < MIN_USERS or not cohort.feature_names:
        raise InsufficientData(f"{len(y)} users old enough to judge {outcome}; need {MIN_USERS}")
    tables = engine.contingency_tables(cohort.usage, y, cohort.feature_names)
    ratios = engine.odds_ratios(tables)
    try:
        model = engine.fit_impact_model(
            cohort.usage,
            y,
            cohort.feature_names,
            model_kind=model_kind,
            n_repeats=5,
            random_state=random_state,
        )
    except ValueError as exc:  # e.g. nobody converted: nothing to learn, nothing to write
        raise InsufficientData(str(exc)) from exc
    name = feature_impact_model_name(outcome)
    champion = MLModel.objects.filter(name=name, is_active=True).first()
    paired = _paired_with_active(champion, model, cohort, y, end, random_state=random_state)
    costs = inputs.feature_costs(list(cohort.feature_names), start, end)
    suggestions = {
        s.feature: s for s in engine.suggest_feature_actions(ratios, model.importances, costs=costs)
    }
    importance = {f.feature: f for f in model.importances}
    with transaction.atomic():
        row = mlmodel_register(
            name=name,
            kind=MLModel.Kind.FEATURE_IMPACT,
            fitted=model.model,
            metrics=model.metrics,
            parameters={
                **model.params,
                "outcome": outcome,
                "days": days,
                "observe_days": observe_days,
                "horizon_days": horizon_days,
                "features": list(cohort.feature_names),
            },
            training_rows=model.n_train,
            holdout_rows=model.n_holdout,
            trained_at=end,
            paired=paired,
            champion=champion,
        )
        FeatureImpact.objects.bulk_create(
            [
                FeatureImpact(
                    model=row,
                    outcome=outcome,
                    feature=r.feature,
                    adoption=r.adoption,
                    support=r.support,
                    odds_ratio=r.odds_ratio,
                    ci_low=r.ci_low,
                    ci_high=r.ci_high,
                    p_value=r.p_value,
                    q_value=r.q_value,
                    success_rate_used=r.success_rate_used,
                    success_rate_unused=(
                        None if math.isnan(r.success_rate_unused) else r.success_rate_unused
                    ),
                    importance=importance[r.feature].importance,
                    importance_std=importance[r.feature].std,
                    cost=costs.get(r.feature),
                    suggestion=suggestions[r.feature].action if r.feature in suggestions else "",
                    reason=suggestions[r.feature].reason if r.feature in suggestions else "",
                )
                for r in ratios
            ]
        )
    return {
        "users": len(y),
        "features": len(ratios),
        "suggestions": len(suggestions),
        "model_version": row.version,
        "activated": int(row.is_active),
    }

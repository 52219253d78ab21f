"""Measuring the insights models on stored data against known truth (read-only).

On a demo world the truth is known: user kinds (``DemoUser``) and incident windows
(``DemoIncident``). These functions refit the engine on the stored data with several
seeds and return rows of measured figures; ``manage.py insights_evaluate`` prints them.
Nothing is written: an evaluation must not change what operators see.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from insights import inputs
from insights.engine import behaviour, segmentation
from insights.engine import feature_impact as fi
from insights.engine import performance_patterns as pp
from insights.services.errors import InsufficientData


def _nanmean(values: list[float]) -> float:
    """Mean of the measurable values; NaN when none was measurable (no incident seen)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def segmentation_rows(start: datetime, end: datetime, *, seeds: int) -> list[dict]:
    days = (end - start).total_seconds() / 86400
    matrix = inputs.behaviour_between(start, end, window_days=days)
    if len(matrix.user_ids) < 40:
        raise InsufficientData(f"only {len(matrix.user_ids)} active users; seed data first")
    kinds = inputs.demo_user_kinds(matrix.user_ids)
    known = np.array([u in kinds for u in matrix.user_ids])
    rows = []
    for seed in range(seeds):
        r = segmentation.segment_users(matrix.features, matrix.feature_names, random_state=seed)
        ari = None
        if known.any():
            truth = [kinds[u] for u in matrix.user_ids[known]]
            ari = segmentation.agreement_with_truth(r.labels[known], truth)["adjusted_rand"]
        rows.append(
            {
                "seed": seed,
                "users": len(matrix.user_ids),
                "k": r.k,
                "silhouette_holdout": r.silhouette_holdout,
                "adjusted_rand_vs_demo_kinds": ari,
            }
        )
    return rows


def feature_impact_rows(
    start: datetime,
    end: datetime,
    *,
    seeds: int,
    observe_days: float = 3.0,
    horizon_days: float = 7.0,
) -> list[dict]:
    cohort = inputs.cohort_between(start, end, observe_days=observe_days, horizon_days=horizon_days)
    rows = []
    for outcome in behaviour.OUTCOMES:
        y = cohort.outcome(outcome)
        for kind in fi.MODEL_KINDS:
            aucs, top = [], None
            for seed in range(seeds):
                try:
                    m = fi.fit_impact_model(
                        cohort.usage,
                        y,
                        cohort.feature_names,
                        model_kind=kind,
                        n_repeats=5,
                        random_state=seed,
                    )
                except ValueError as exc:
                    raise InsufficientData(f"feature impact ({outcome}): {exc}") from exc
                aucs.append(m.auc_holdout)
                top = m.importances[0].feature
            rows.append(
                {
                    "outcome": outcome,
                    "users": len(y),
                    "outcome_rate": float(y.mean()),
                    "model": kind,
                    "auc_holdout": float(np.mean(aucs)),
                    "top_feature": top,
                }
            )
    return rows


def state_model_rows(
    start: datetime, end: datetime, *, seeds: int, step_seconds: int = 300
) -> tuple[list[dict], dict]:
    """Held-out metrics of the forest on each input kind and of the max-z baseline."""
    history = inputs.state_history(start, end, step_seconds=step_seconds)
    if len(history.columns) < 2:
        raise InsufficientData("fewer than two system metrics stored")
    windows = inputs.incident_windows(start, end)
    info = {"states": len(history.ts), "metrics": len(history.columns), "incidents": len(windows)}
    rows = []
    train_share = 0.6
    for inp in pp.STATE_INPUTS:
        runs = []
        for seed in range(seeds):
            fit = pp.fit_state_model(
                history.ts,
                history.states,
                history.columns,
                inputs=inp,
                train_share=train_share,
                random_state=seed,
            )
            runs.append(
                pp.evaluate_against_incidents(
                    fit.holdout_ts, fit.holdout_scores, fit.model.threshold, windows
                )
            )
        mean = {k: _nanmean([r[k] for r in runs]) for k in runs[0]}
        rows.append({"detector": f"forest on {inp}", **mean})
    n = int(len(history.ts) * train_share)
    train = pp.single_series_scores(history.states[:n], history.states[:n])
    baseline = pp.evaluate_against_incidents(
        history.ts[n:],
        pp.single_series_scores(history.states[:n], history.states[n:]),
        float(np.quantile(train, 0.99)),
        windows,
    )
    rows.append({"detector": "max single-series z", **baseline})
    return rows, info


class _Rollback(Exception):
    """Raised to undo a measurement's writes."""


def champion_challenger_rows(end: datetime, *, gaps_days: list[float]) -> list[dict]:
    """How the registry decides between a retrain and an active version ``gap`` days older.

    For each job and gap: the job runs at ``end - gap`` (the champion) and at ``end`` (the
    challenger) on a registry emptied of that model, and the challenger's rule, rows
    neither saw and paired figures are read back. Everything happens in a transaction
    that is rolled back: the registry operators see is untouched.
    """
    from django.db import transaction

    from insights.model_names import SEGMENT_MODEL, STATE_MODEL, feature_impact_model_name
    from insights.models import MLModel
    from insights.services.feature_impact import feature_impact_recompute
    from insights.services.patterns import state_patterns_refresh
    from insights.services.segments import segments_recompute

    jobs = [
        ("segments", SEGMENT_MODEL, lambda t: segments_recompute(now=t)),
        *(
            (
                f"feature impact, {outcome}",
                feature_impact_model_name(outcome),
                lambda t, o=outcome: feature_impact_recompute(outcome=o, now=t),
            )
            for outcome in behaviour.OUTCOMES
        ),
        ("state model", STATE_MODEL, lambda t: state_patterns_refresh(now=t, force_retrain=True)),
    ]
    rows = []
    for gap in gaps_days:
        for label, name, run in jobs:
            try:
                with transaction.atomic():
                    MLModel.objects.filter(name=name).delete()
                    run(end - timedelta(days=gap))
                    run(end)
                    challenger = (
                        MLModel.objects.filter(name=name).defer("artefact").order_by("-version")
                    ).first()
                    rows.append(
                        {
                            "job": label,
                            "gap_days": gap,
                            "rule": challenger.activation_rule,
                            "activated": challenger.is_active,
                            **challenger.comparison,
                        }
                    )
                    raise _Rollback
            except _Rollback:
                pass
            except InsufficientData as exc:
                rows.append({"job": label, "gap_days": gap, "rule": f"skipped: {exc}"})
    return rows

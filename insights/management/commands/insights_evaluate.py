"""Evaluate the insights models on the data in the database, without writing anything.

On a demo world (``manage.py seed_demo``) the truth is known: user kinds (DemoUser)
and incident windows (DemoIncident). This command measures against them:

- segmentation: held-out silhouette, chosen k, adjusted Rand index vs the true kinds;
- feature impact: held-out AUC per outcome and model kind, the top driver;
- state anomalies: held-out precision / recall / AUC / incident recall for the forest
  over levels, residuals and both, and for the max single-series z baseline.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from insights import inputs
from insights.engine import behaviour, segmentation
from insights.engine import feature_impact as fi
from insights.engine import performance_patterns as pp


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


class Command(BaseCommand):
    help = "Measure segmentation, feature impact and state-anomaly models on stored data."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=28)
        parser.add_argument("--seeds", type=int, default=3, help="random seeds to average")

    def handle(self, *args, **opts) -> None:
        days, seeds = opts["days"], opts["seeds"]
        if days < 7 or seeds < 1:
            raise CommandError("--days must be >= 7 and --seeds >= 1")
        end = timezone.now()
        start = end - timedelta(days=days)
        out = self.stdout.write

        matrix = inputs.behaviour_between(start, end, window_days=days)
        if len(matrix.user_ids) < 40:
            raise CommandError(f"only {len(matrix.user_ids)} active users; seed data first")
        kinds = inputs.demo_user_kinds(matrix.user_ids)
        out(f"\n## Segmentation ({len(matrix.user_ids)} users, {days} days)")
        out("| seed | k | held-out silhouette | ARI vs demo kinds |")
        out("|---|---|---|---|")
        for seed in range(seeds):
            r = segmentation.segment_users(matrix.features, matrix.feature_names, random_state=seed)
            known = np.array([u in kinds for u in matrix.user_ids])
            ari = (
                segmentation.agreement_with_truth(
                    r.labels[known], [kinds[u] for u in matrix.user_ids[known]]
                )["adjusted_rand"]
                if known.any()
                else None
            )
            out(f"| {seed} | {r.k} | {_fmt(r.silhouette_holdout)} | {_fmt(ari)} |")

        cohort = inputs.cohort_between(start, end, observe_days=3.0, horizon_days=7.0)
        out(f"\n## Feature impact ({len(cohort.user_ids)} users, first 3 days -> 7-day outcome)")
        out("| outcome | rate | model | held-out AUC (mean of seeds) | top feature |")
        out("|---|---|---|---|---|")
        for outcome in behaviour.OUTCOMES:
            y = cohort.outcome(outcome)
            for kind in fi.MODEL_KINDS:
                aucs, top = [], ""
                for seed in range(seeds):
                    try:
                        m = fi.fit_impact_model(
                            cohort.usage, y, cohort.feature_names, model_kind=kind,
                            n_repeats=5, random_state=seed,
                        )  # fmt: skip
                    except ValueError as exc:
                        raise CommandError(f"feature impact ({outcome}): {exc}") from exc
                    aucs.append(m.auc_holdout)
                    top = m.importances[0].feature
                out(f"| {outcome} | {y.mean():.2f} | {kind} | {_fmt(np.mean(aucs))} | {top} |")

        history = inputs.state_history(start, end, step_seconds=300)
        windows = inputs.incident_windows(start, end)
        out(f"\n## State anomalies ({len(history.ts)} states x {len(history.columns)} metrics, "
            f"{len(windows)} known incidents; train first 60%, score the rest)")  # fmt: skip
        out("| detector | precision | recall | AUC | avg precision | incident recall |")
        out("|---|---|---|---|---|---|")
        if len(history.columns) < 2:
            raise CommandError("fewer than two system metrics stored")
        for inp in pp.STATE_INPUTS:
            rows = [
                pp.evaluate_against_incidents(
                    f.holdout_ts, f.holdout_scores, f.model.threshold, windows
                )
                for f in (
                    pp.fit_state_model(
                        history.ts,
                        history.states,
                        history.columns,
                        inputs=inp,
                        random_state=seed,
                    )
                    for seed in range(seeds)
                )
            ]
            mean = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
            out(
                f"| forest on {inp} | {_fmt(mean['precision'])} | {_fmt(mean['recall'])} "
                f"| {_fmt(mean['auc'])} | {_fmt(mean['average_precision'])} "
                f"| {_fmt(mean['incident_recall'])} |"
            )
        n = int(len(history.ts) * 0.6)
        train = pp.single_series_scores(history.states[:n], history.states[:n])
        base = pp.evaluate_against_incidents(
            history.ts[n:],
            pp.single_series_scores(history.states[:n], history.states[n:]),
            float(np.quantile(train, 0.99)),
            windows,
        )
        out(
            f"| max single-series z | {_fmt(base['precision'])} | {_fmt(base['recall'])} "
            f"| {_fmt(base['auc'])} | {_fmt(base['average_precision'])} "
            f"| {_fmt(base['incident_recall'])} |"
        )

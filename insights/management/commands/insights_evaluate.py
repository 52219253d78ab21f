"""Evaluate the insights models on the data in the database, without writing anything.

The measuring is in ``insights.evaluation``; this command validates arguments and
prints the tables (markdown, ready for docs/insights.md).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from insights import evaluation
from insights.services.errors import InsufficientData


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


class Command(BaseCommand):
    help = "Measure segmentation, feature impact and state-anomaly models on stored data."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=28)
        parser.add_argument("--seeds", type=int, default=3, help="random seeds to average")

    def handle(self, *args, **opts) -> None:
        days, seeds = opts["days"], opts["seeds"]
        if days < 8 or seeds < 1:
            raise CommandError("--days must be >= 8 and --seeds >= 1")
        end = timezone.now()
        start = end - timedelta(days=days)
        out = self.stdout.write
        try:
            seg = evaluation.segmentation_rows(start, end, seeds=seeds)
            impact = evaluation.feature_impact_rows(start, end, seeds=seeds)
            states, info = evaluation.state_model_rows(start, end, seeds=seeds)
        except InsufficientData as exc:
            raise CommandError(str(exc)) from exc

        out(f"\n## Segmentation ({seg[0]['users']} users, {days} days)")
        out("| seed | k | held-out silhouette | ARI vs demo kinds |")
        out("|---|---|---|---|")
        for r in seg:
            out(
                f"| {r['seed']} | {r['k']} | {_fmt(r['silhouette_holdout'])} "
                f"| {_fmt(r['adjusted_rand_vs_demo_kinds'])} |"
            )
        out(f"\n## Feature impact ({impact[0]['users']} users, first 3 days -> 7-day outcome)")
        out("| outcome | rate | model | held-out AUC (mean of seeds) | top feature |")
        out("|---|---|---|---|---|")
        for r in impact:
            out(
                f"| {r['outcome']} | {r['outcome_rate']:.2f} | {r['model']} "
                f"| {_fmt(r['auc_holdout'])} | {r['top_feature']} |"
            )
        out(
            f"\n## State anomalies ({info['states']} states x {info['metrics']} metrics, "
            f"{info['incidents']} known incidents; train first 60%, score the rest)"
        )
        out("| detector | precision | recall | AUC | avg precision | incident recall |")
        out("|---|---|---|---|---|---|")
        for r in states:
            out(
                f"| {r['detector']} | {_fmt(r['precision'])} | {_fmt(r['recall'])} "
                f"| {_fmt(r['auc'])} | {_fmt(r['average_precision'])} "
                f"| {_fmt(r['incident_recall'])} |"
            )

"""Measure the rollout hash (``engine.rollout``) on many ids: the share inside each
percentage against its binomial bounds, and independence from the variant bucketing.
Writes and reads nothing; the figures in docs/personalization.md come from here."""

import numpy as np
from django.core.management.base import BaseCommand
from scipy import stats

from personalization.engine.assignment import growthbook_hash
from personalization.engine.rollout import rollout_position


class Command(BaseCommand):
    help = "Share inside each rollout percentage and independence from the variant bucketing."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--users", type=int, default=100_000)
        parser.add_argument("--key", default="checkout-redesign", help="the experiment key")

    def handle(self, *args, users: int, key: str, **options) -> None:
        # Two shapes of id: sequential ones and Auth0-style hex ones.
        ids = [f"user-{i}" for i in range(users // 2)]
        ids += [f"auth0|5f7c{i:08x}" for i in range(users - users // 2)]
        n = len(ids)
        position = np.array([rollout_position(experiment_key=key, user_id=u) for u in ids])
        bucketing = np.array([growthbook_hash(key, u) for u in ids])
        self.stdout.write(f"Rollout of experiment {key!r} over {n:,} ids")
        for percent in (1, 10, 50, 90):
            p = percent / 100
            share = float(np.mean(position < p))
            se = np.sqrt(p * (1 - p) / n)
            self.stdout.write(f"{percent:>4}%: share in {share:.4f} ({(share - p) / se:+.2f} s.e.)")
        control = bucketing < 0.5  # the control of a 50/50 experiment
        for percent in (10, 50):
            p = percent / 100
            self.stdout.write(
                f"{percent}% rollout: share in among control {np.mean(position[control] < p):.4f}"
                f", among b {np.mean(position[~control] < p):.4f}"
            )
        grid = np.histogram2d(position, bucketing, bins=10, range=[[0, 1], [0, 1]])[0]
        test = stats.chi2_contingency(grid)
        r = stats.pearsonr(position, bucketing).statistic
        self.stdout.write(
            f"10x10 grid chi-square {test.statistic:.1f} ({test.dof} d.f.), "
            f"p={test.pvalue:.2f}; Pearson r={r:+.4f}"
        )

"""Check the experiment statistics on simulated experiments with a known answer.

Writes nothing and reads no database: the power planner against the rejection rate of
the analysis's own tests, and CUPED's bias, variance reduction and coverage. The figures
in docs/personalization.md come from it.
"""

import json
from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError

from personalization.engine.cuped import simulate_cuped_checks
from personalization.engine.power import simulate_power_checks


class Command(BaseCommand):
    help = "Power planner and CUPED checked on simulated experiments (writes nothing)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--experiments", type=int, default=20_000,
                            help="simulated experiments per rate design (means: a quarter; "
                                 "CUPED: a twentieth); default 20000")  # fmt: skip
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, experiments: int, seed: int, json: bool = False, **options) -> None:
        if not 20 <= experiments <= 1_000_000:
            raise CommandError("--experiments must be between 20 and 1000000")
        power = simulate_power_checks(experiments=experiments, seed=seed)
        cuped = simulate_cuped_checks(experiments=max(experiments // 20, 1), seed=seed)
        if json:
            report = {"power": [asdict(p) for p in power], "cuped": [asdict(c) for c in cuped]}
            self.stdout.write(_json(report))
            return
        self.stdout.write("Power planned (alpha 0.05, two-sided) vs simulated rejection rate")
        for p in power:
            self.stdout.write(
                f"  {p.label:<34} {p.users_control:>6,} / {p.users_treatment:<6,} users: "
                f"planned {p.planned_power:.3f}, simulated {p.simulated_power:.3f} "
                f"({p.experiments:,} experiments)"
            )
        self.stdout.write("CUPED on synthetic experiments (pre-exposure X correlated rho with Y)")
        for c in cuped:
            self.stdout.write(
                f"  rho={c.rho:g}: mean adjusted effect {c.mean_adjusted:.4f} "
                f"(s.e. {c.se_mean_adjusted:.4f}; true {c.effect:g}; unadjusted "
                f"{c.mean_unadjusted:.4f}), variance ratio {c.variance_ratio:.3f} "
                f"(1 - rho^2 = {1 - c.rho**2:.3f}), reported reduction "
                f"{c.reported_reduction:.3f}, 95% coverage {c.coverage:.3f} "
                f"({c.experiments:,} experiments x {c.users_per_arm} users per arm)"
            )


def _json(report: dict) -> str:
    return json.dumps(report, indent=2)

"""Run an insights job now, in this process: the CLI face of the services."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from insights.services.errors import InsufficientData
from insights.services.feature_impact import feature_impact_recompute
from insights.services.insights import insights_generate
from insights.services.patterns import state_patterns_refresh
from insights.services.segments import segments_recompute

JOBS = ("segments", "feature-impact", "patterns", "generate", "all")


class Command(BaseCommand):
    help = "Train/refresh segments, feature impact or anomaly patterns, or generate insights."

    def add_arguments(self, parser) -> None:
        parser.add_argument("job", choices=JOBS)
        parser.add_argument("--days", type=int, default=28, help="history window (days)")
        parser.add_argument(
            "--outcome",
            choices=["retention", "conversion", "both"],
            default="both",
            help="feature-impact outcome",
        )
        parser.add_argument(
            "--model-kind", choices=["logistic", "gradient_boosting"], default="logistic"
        )
        parser.add_argument(
            "--force-retrain", action="store_true", help="patterns: retrain the forest now"
        )

    def handle(self, *args, **opts) -> None:
        if opts["days"] < 2:
            raise CommandError("--days must be at least 2")
        job = opts["job"]
        steps = []
        if job in ("segments", "all"):
            steps.append(("segments", lambda: segments_recompute(days=opts["days"])))
        if job in ("feature-impact", "all"):
            outcomes = (
                ["retention", "conversion"] if opts["outcome"] == "both" else [opts["outcome"]]
            )
            for outcome in outcomes:
                steps.append(
                    (
                        f"feature impact ({outcome})",
                        lambda outcome=outcome: feature_impact_recompute(
                            outcome=outcome, days=opts["days"], model_kind=opts["model_kind"]
                        ),
                    )
                )
        if job in ("patterns", "all"):
            steps.append(
                (
                    "patterns",
                    lambda: state_patterns_refresh(
                        days=opts["days"], force_retrain=opts["force_retrain"]
                    ),
                )
            )
        if job in ("generate", "all"):
            steps.append(("insights", insights_generate))
        failed = []
        for label, run in steps:
            try:
                counts = run()
            except (InsufficientData, ValueError) as exc:
                self.stderr.write(f"{label}: not run: {exc}")
                failed.append(label)
                continue
            self.stdout.write(f"{label}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        if failed:
            raise CommandError(f"{len(failed)} job(s) did not run: {', '.join(failed)}")

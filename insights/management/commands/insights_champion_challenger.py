"""How the registry would judge a retrain against an active version days older.

Runs each job twice (``gap`` days ago, then now) inside a transaction that is rolled
back, and prints which rule decided with the paired figures (markdown, for
docs/insights.md). Nothing is written.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from insights import evaluation


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


class Command(BaseCommand):
    help = "Measure the champion/challenger rule of each insights job on stored data."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--gap-days", type=float, action="append", help="age of the champion (repeatable)"
        )

    def handle(self, *args, **opts) -> None:
        gaps = opts["gap_days"] or [1.0, 7.0]
        if any(g <= 0 for g in gaps):
            raise CommandError("--gap-days must be > 0")
        rows = evaluation.champion_challenger_rows(timezone.now(), gaps_days=gaps)
        out = self.stdout.write
        out("| job | champion age (days) | rule | activated | rows neither saw | new | old "
            "| diff | SE |")  # fmt: skip
        out("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            out(
                f"| {r['job']} | {r['gap_days']:g} | {r['rule']} | {r.get('activated', '-')} | "
                + " | ".join(_fmt(r.get(k)) for k in ("n", "new", "old", "diff", "se"))
                + " |"
            )

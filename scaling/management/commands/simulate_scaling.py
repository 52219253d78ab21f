"""Replay a load trace through the scaling engine, causally, and write the units it decides."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scaling import engine


class Command(BaseCommand):
    help = (
        "Replay TRACE.csv (timestamp,value) through the scaling engine and write "
        "timestamp,load,desired_units. desired_units at a row is decided from data up to that "
        "row and serves the next one. --compare prints the plain HPA rule's figures beside it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("trace", type=Path)
        parser.add_argument("--unit-capacity", type=float, required=True)
        parser.add_argument("--min-units", type=int, default=1)
        parser.add_argument("--max-units", type=int, default=1000)
        parser.add_argument("--target-utilization", type=float, default=0.7)
        parser.add_argument("--startup-seconds", type=float, default=0.0,
                            help="provisioning lead beyond the next step")  # fmt: skip
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--compare", action="store_true", help="also replay the HPA rule")

    def handle(self, *args, **opts) -> None:
        if opts["unit_capacity"] <= 0:
            raise CommandError("--unit-capacity must be > 0")
        if opts["min_units"] < 1 or opts["max_units"] < opts["min_units"]:
            raise CommandError("need 1 <= --min-units <= --max-units")
        if not 0 < opts["target_utilization"] <= 1:
            raise CommandError("--target-utilization must be in (0, 1]")
        if opts["startup_seconds"] < 0:
            raise CommandError("--startup-seconds must be >= 0")
        try:
            ts, load = engine.read_trace_csv(opts["trace"])
        except engine.TraceError as exc:
            raise CommandError(str(exc)) from exc
        policy = engine.SimulationPolicy(startup_seconds=opts["startup_seconds"])
        try:
            result = engine.simulate(ts, load, opts["unit_capacity"], opts["min_units"],
                                     opts["max_units"], opts["target_utilization"], policy=policy)  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        out: Path = opts["out"]
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["timestamp", "load", "desired_units"])
                for t, value, units in zip(ts, load, result.units, strict=True):
                    stamp = np.datetime64(int(t), "s").astype(str).replace("T", " ")
                    writer.writerow([stamp, f"{value:g}", int(units)])
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc}") from exc
        step = float(np.median(np.diff(ts)))
        ours = engine.replay_metrics(load, result.units, opts["unit_capacity"], step)
        self.stdout.write(self._line("engine", ours))
        if opts["compare"]:
            hpa = engine.hpa_reference(ts, load, opts["unit_capacity"], opts["min_units"],
                                       opts["max_units"], opts["target_utilization"])  # fmt: skip
            self.stdout.write(
                self._line("HPA", engine.replay_metrics(load, hpa, opts["unit_capacity"], step))
            )
        self.stdout.write(f"wrote {len(ts)} rows to {out}")

    @staticmethod
    def _line(name: str, m: engine.ReplayMetrics) -> str:
        return (f"{name:6} overloaded steps {m.overloaded_steps} ({m.overloaded_minutes:.0f} min), "
                f"unit-hours {m.unit_hours:.1f}, changes {m.changes}, "
                f"mean utilisation {m.mean_utilization:.3f}")  # fmt: skip

"""Replay the NAB tweet-volume traces through the scaling engine and the plain HPA rule.

    .venv/bin/python bench/scaling.py [--data DIR] [--targets 0.5 0.7 0.85] [--sizes 3 10 30]
        [--forecaster seasonal|ewma|naive] [--jobs 2]

For every trace, target utilisation U and size k, the unit capacity is
``p90(load) / k`` (the busy-hour load needs about k units at full use), with
min 1 unit and no practical maximum. Prints overloaded steps, unit-hours and
changes for both policies, and how many cases the engine beats HPA on all three.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaling.engine import (
    SeasonalLevelForecaster,
    hpa_reference,
    last_value_forecaster,
    read_trace_csv,
    replay_metrics,
    simulate,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/nab/data/realTweets"
FORECASTERS = {
    "seasonal": SeasonalLevelForecaster(),
    "ewma": SeasonalLevelForecaster(min_seasons=10**6),
    "naive": last_value_forecaster,
}


def run_case(args: tuple[Path, float, int, str]) -> dict:
    path, target, size, forecaster = args
    ts, load = read_trace_csv(path)
    capacity = max(float(np.percentile(load, 90)) / size, 1e-9)
    step = float(np.median(np.diff(ts)))
    started = time.perf_counter()
    ours = simulate(ts, load, capacity, 1, 10**6, target, forecaster=FORECASTERS[forecaster])
    seconds = time.perf_counter() - started
    hpa = hpa_reference(ts, load, capacity, 1, 10**6, target)
    return {
        "trace": path.stem.replace("Twitter_volume_", ""),
        "target": target,
        "size": size,
        "ours": replay_metrics(load, ours.units, capacity, step),
        "hpa": replay_metrics(load, hpa, capacity, step),
        "seconds": seconds,
        "steps": load.size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.7, 0.85])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--forecaster", choices=sorted(FORECASTERS), default="seasonal")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    files = sorted(args.data.glob("*.csv"))
    if not files:
        print(f"no CSV traces in {args.data}", file=sys.stderr)
        return 2
    cases = [(f, u, k, args.forecaster) for u in args.targets for k in args.sizes for f in files]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_case, cases))
    print(
        f"{'trace':6} {'U':>5} {'k':>3} | {'HPA over':>8} {'unit-h':>9} {'chg':>6} | "
        f"{'ours over':>9} {'unit-h':>9} {'chg':>6} | wins"
    )
    totals: dict[float, list[float]] = {}
    for r in results:
        h, o = r["hpa"], r["ours"]
        win = (
            o.overloaded_steps < h.overloaded_steps
            and o.unit_hours <= h.unit_hours
            and (o.changes < h.changes)
        )
        t = totals.setdefault(r["target"], [0] * 8)
        for i, v in enumerate(
            (
                h.overloaded_steps,
                h.unit_hours,
                h.changes,
                o.overloaded_steps,
                o.unit_hours,
                o.changes,
                win,
                1,
            )
        ):
            t[i] += v
        print(
            f"{r['trace']:6} {r['target']:5.2f} {r['size']:3d} | {h.overloaded_steps:8d} "
            f"{h.unit_hours:9.0f} {h.changes:6d} | {o.overloaded_steps:9d} {o.unit_hours:9.0f} "
            f"{o.changes:6d} | {'yes' if win else 'no'}"
        )
    print()
    for target, t in sorted(totals.items()):
        print(
            f"U={target:.2f} total: HPA overloaded {t[0]:.0f}, unit-hours {t[1]:.0f}, changes "
            f"{t[2]:.0f} | engine overloaded {t[3]:.0f} ({t[3] / t[0] - 1:+.0%}), unit-hours "
            f"{t[4]:.0f} ({t[4] / t[1] - 1:+.1%}), changes {t[5]:.0f} ({t[5] / t[2] - 1:+.0%}) | "
            f"wins on all three: {t[6]:.0f}/{t[7]:.0f}"
        )
    speed = sum(r["steps"] for r in results) / sum(r["seconds"] for r in results)
    print(f"engine replay speed: {speed:,.0f} steps/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

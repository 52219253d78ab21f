"""Forecasting speed: series per second per core, model selection included.

    .venv/bin/python bench/forecasting.py --series 100 --days 90 --horizon-hours 168

Generates ``--series`` hourly series of ``--days`` days (trend, daily and
weekly cycles, noise, different per series), then runs the full per-series
pipeline (seasonality detection, rolling-origin backtest of every candidate,
selection, interval calibration, final forecast) first in one process and
then in ``--workers`` processes, the way Celery workers would split the
fan-out. BLAS threads are pinned to 1 so that one process is one core.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecasting.engine import select_and_forecast  # noqa: E402


def make_series(index: int, days: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic hourly series; the seed is its index so runs are repeatable."""
    rng = np.random.default_rng(index)
    i = np.arange(24 * days)
    level = rng.uniform(50, 5000)
    y = level * (
        1
        + rng.uniform(-0.002, 0.004) * i / 24
        + rng.uniform(0, 0.4) * np.sin(2 * np.pi * (i + rng.integers(24)) / 24)
        - rng.uniform(0, 0.2) * ((i // 24) % 7 >= 5)
    ) + rng.normal(0, level * rng.uniform(0.01, 0.1), i.size)
    return i * 3600.0 + 1.7e9, np.maximum(y, 0)


def run_one(args: tuple[int, int, int]) -> str:
    index, days, horizon = args
    ts, y = make_series(index, days)
    return select_and_forecast(ts, y, horizon).model


def timed(work: list[tuple[int, int, int]], workers: int) -> tuple[float, float, list[str]]:
    """Wall seconds, CPU seconds of this process (meaningful for one worker) and models."""
    started, cpu = time.perf_counter(), time.process_time()
    if workers == 1:
        models = [run_one(w) for w in work]
    else:
        with ProcessPoolExecutor(workers) as pool:
            models = list(pool.map(run_one, work, chunksize=max(1, len(work) // (4 * workers))))
    return time.perf_counter() - started, time.process_time() - cpu, models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--horizon-hours", type=int, default=168)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = [(i, args.days, args.horizon_hours) for i in range(args.series)]
    run_one(work[0])  # warm imports and caches outside the timing
    one, one_cpu, models = timed(work, 1)
    many, _, _ = timed(work, args.workers)
    counts: dict[str, int] = {}
    for m in models:
        counts[m] = counts.get(m, 0) + 1
    print(f"series: {args.series} x {args.days} days hourly, horizon {args.horizon_hours} h")
    print(
        f"1 process:  {one:6.2f} s wall, {one_cpu:6.2f} s CPU -> "
        f"{args.series / one:6.1f} series/s (wall), {args.series / one_cpu:6.1f} series/CPU-s"
    )
    print(
        f"{args.workers} processes: {many:6.2f} s  -> {args.series / many:6.1f} series/s "
        f"(speed-up x{one / many:.2f} on {os.cpu_count()} cores)"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average during the run: {load:.2f} (other work on the machine skews both)")
    print("models chosen:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

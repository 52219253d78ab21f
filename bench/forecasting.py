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


def run_one(args: tuple[int, int, int]) -> tuple[str, int, float]:
    """Forecast one series; returns the model, the worker's pid and the CPU seconds it took."""
    index, days, horizon = args
    started = time.process_time()
    ts, y = make_series(index, days)
    model = select_and_forecast(ts, y, horizon).model
    return model, os.getpid(), time.process_time() - started


def timed(work: list[tuple[int, int, int]], workers: int) -> tuple[float, dict[int, float], list]:
    """Wall seconds, CPU seconds spent per worker process, and the per-series results."""
    started = time.perf_counter()
    if workers == 1:
        results = [run_one(w) for w in work]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(run_one, work, chunksize=max(1, len(work) // (4 * workers))))
    per_worker: dict[int, float] = {}
    for _, pid, cpu in results:
        per_worker[pid] = per_worker.get(pid, 0.0) + cpu
    return time.perf_counter() - started, per_worker, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--horizon-hours", type=int, default=168)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = [(i, args.days, args.horizon_hours) for i in range(args.series)]
    run_one(work[0])  # warm imports and caches outside the timing
    one, one_workers, results = timed(work, 1)
    many, many_workers, _ = timed(work, args.workers)
    one_cpu = sum(one_workers.values())
    counts: dict[str, int] = {}
    for model, _, _ in results:
        counts[model] = counts.get(model, 0) + 1
    print(f"series: {args.series} x {args.days} days hourly, horizon {args.horizon_hours} h")
    print(
        f"1 process:  {one:6.2f} s wall, {one_cpu:6.2f} s CPU -> "
        f"{args.series / one:6.1f} series/s (wall), {args.series / one_cpu:6.1f} series/CPU-s"
    )
    print(
        f"{args.workers} processes: {many:6.2f} s wall -> {args.series / many:6.1f} series/s "
        f"(measured speed-up x{one / many:.2f} on {os.cpu_count()} cores)"
    )
    # With cores of its own, a run lasts as long as its busiest worker's CPU time: total CPU
    # over the busiest worker's is the speed-up the split allows, whatever else the shared
    # machine is doing (CPU seconds of both runs are not comparable under contention).
    busiest = max(many_workers.values())
    print(
        f"  CPU per worker: {', '.join(f'{c:.2f}s' for c in many_workers.values())} "
        f"-> speed-up on dedicated cores x{sum(many_workers.values()) / busiest:.2f}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average during the run: {load:.2f} (other work on the machine skews both)")
    print("models chosen:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of the anomaly engine (not part of the test suite).

    .venv/bin/python bench/anomalies.py [--series 1000] [--points 10080]
        [--incremental-series 10000] [--chunk 250]

1. Batch: points scored per second for `--series` series of `--points` one-minute points
   (a week), scored in chunks of `--chunk` series (bounded memory), all four families.
2. Incremental: one scheduled run over `--incremental-series` series that each receive one
   new point, with the states already warm (five hours of history); timed with and without
   writing every series' state blob, which is what the scheduled job stores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalies.engine import StreamingDetector

STEP = 60.0


def synthetic_block(n_series: int, n_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000.0 + STEP * np.arange(n_points)
    phase = rng.uniform(0, 2 * np.pi, (n_series, 1))
    level = rng.uniform(10, 1000, (n_series, 1))
    daily = np.sin(2 * np.pi * ts[None, :] / 86400.0 + phase)
    values = level * (1 + 0.3 * daily) + rng.normal(0, 1, (n_series, n_points)) * level * 0.02
    spikes = rng.random((n_series, n_points)) < 1e-4
    values[spikes] *= 1.5
    return np.broadcast_to(ts, values.shape).copy(), values


def bench_batch(n_series: int, n_points: int, chunk: int) -> float:
    total = 0.0
    for start in range(0, n_series, chunk):
        size = min(chunk, n_series - start)
        ts, values = synthetic_block(size, n_points, seed=start)
        began = time.perf_counter()
        StreamingDetector(size).update(ts, values)
        total += time.perf_counter() - began
    rate = n_series * n_points / total
    print(f"batch: {n_series} series x {n_points} points in {total:.1f}s = {rate:,.0f} points/s")
    return rate


def bench_incremental(n_series: int, history: int = 300) -> float:
    ts, values = synthetic_block(n_series, history + 1, seed=7)
    detector = StreamingDetector(n_series)
    detector.update(ts[:, :history], values[:, :history])
    began = time.perf_counter()
    detector.update(ts[:, history:], values[:, history:], auto_retrain=False)
    scored = time.perf_counter() - began
    blobs = [detector.series_state(s) for s in range(n_series)]
    with_states = time.perf_counter() - began
    size = sum(len(b) for b in blobs) / n_series
    print(
        f"incremental: {n_series} series x 1 new point: score {scored:.2f}s, "
        f"score + serialise states {with_states:.2f}s ({size / 1024:.1f} KiB per state)"
    )
    return with_states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=10080)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--incremental-series", type=int, default=10000)
    args = parser.parse_args()
    bench_incremental(args.incremental_series)
    bench_batch(args.series, args.points, args.chunk)


if __name__ == "__main__":
    main()

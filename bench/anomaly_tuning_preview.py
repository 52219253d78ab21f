"""What a tuning preview costs (`anomalies/engine/tuning_preview.py`, `anomaly/tunings/preview`).

    .venv/bin/python bench/anomaly_tuning_preview.py

A preview replays each series it shows from a fresh detector under several tunings at
once. The detector is vectorised across series, not across time, so the cost should
follow the number of time steps, not the number of copies: this prints the replay of one
series under one tuning (the baseline, what `score_series` costs), under the four tunings
a preview replays (three sensitivities and the tuning the series has now), and five
series under four each (the preview's cap), at the preview's point cap for one-minute and
five-minute series, with each time as a ratio of the baseline.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalies.engine import Tuning
from anomalies.engine.tuning_preview import replay_tunings

FOUR = [Tuning("low"), Tuning("medium"), Tuning("high"), Tuning("medium", "above")]


def _series(n: int, step: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1.7e9 + step * np.arange(n)
    daily = 20 * np.sin(2 * np.pi * ts / 86400)
    return ts, 100 + daily + rng.gamma(2.0, 3.0, n)


def _timed(series, tunings) -> tuple[float, int]:
    started = time.perf_counter()
    result = replay_tunings(series, tunings, since=series[0][0][len(series[0][0]) // 2])
    return time.perf_counter() - started, sum(r.count for row in result for r in row)


def main() -> int:
    print("| series | points each | tunings | seconds | ratio to one series, one tuning |")
    print("|---|---|---|---|---|")
    for step, n in ((60.0, 20_160), (300.0, 4_032)):
        many = [_series(n, step, seed) for seed in range(5)]
        base, _ = _timed(many[:1], [Tuning()])
        for series, tunings in ((many[:1], [Tuning()]), (many[:1], FOUR), (many, FOUR)):
            took = base if len(series) * len(tunings) == 1 else _timed(series, tunings)[0]
            print(
                f"| {len(series)} | {n:,} ({step / 60:.0f}-minute) | {len(tunings)} "
                f"| {took:.1f} | {took / base:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

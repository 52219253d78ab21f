"""A held-out check of the anomaly engine on operational archetypes that the NAB
development subset does not contain (not part of the test suite).

    .venv/bin/python bench/anomaly_archetypes.py [--out var/archetypes] [--seeds 4]

The development subset is mostly Twitter volumes and ad-exchange prices, and the engine's
defaults were chosen on it. This script writes a small labelled corpus in the NAB layout:
a CPU level shift, a temperature drift followed by a failure, a missing holiday in
half-hourly taxi-like traffic, a two-hour latency outage on a spiky lognormal series, a
road closure in irregularly sampled traffic speeds, a two-hour write storm on heavy-tailed
disk bytes, a stuck exporter on a CPU percentage rounded to one decimal, a burst of
variance at an unchanged mean, and quiet seasonal series with nothing to find. It runs the
same CSV path as `manage.py detect_anomalies` and scores the output with the shared NAB scorer, once for the
whole corpus and once per archetype (each scored with the quiet series). Anomaly windows are
NAB's: 10% of the file divided by the number of anomalies, centred on each onset.
Nothing was tuned on it: it exists to tell a change that generalises from one that fits the
development files. (The last four archetypes came later; the stuck exporter was written
to check the flatline statistic, showed that it failed, and is what `flatline.py` fixed.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalies.engine.csv_runner import run_csv_files

ROOT = Path(__file__).resolve().parents[1]
SCORER = ROOT.parent / "shared" / "tools" / "nab_score.py"
START = 1_400_000_000
ARCHETYPES = (
    "synthCpu",
    "synthTemp",
    "synthTaxi",
    "synthLatency",
    "synthTraffic",
    "synthDisk",
    "synthStuck",
    "synthVariance",
)


def _ar(rng: np.random.Generator, n: int, phi: float = 0.8) -> np.ndarray:
    noise = rng.normal(0, 1, n)
    out = np.zeros(n)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + noise[i]
    return out


def _onset(rng: np.random.Generator, n: int) -> int:
    """Where a later archetype's anomaly starts: anywhere from 40 % to 85 % of the file."""
    return int(rng.uniform(0.4, 0.85) * n)


def _write(corpus: Path, windows: dict, name: str, step, values, onsets) -> None:
    """`step` is the sampling interval in seconds, or every point's own offset from START."""
    n = len(values)
    offsets = np.asarray(step) if np.ndim(step) else step * np.arange(n)
    stamps = pd.to_datetime(START + offsets, unit="s")
    path = corpus / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values})
    frame.to_csv(path, index=False, float_format="%.4f")
    half = int(0.1 * n / max(len(onsets), 1)) // 2
    fmt = "%Y-%m-%d %H:%M:%S.000000"
    windows[name] = [
        [stamps[max(0, a - half)].strftime(fmt), stamps[min(n - 1, a + half)].strftime(fmt)]
        for a in onsets
    ]


def build_corpus(corpus: Path, seeds: int) -> None:
    windows: dict[str, list] = {}
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        n = 4032  # two weeks at five minutes
        a = int(rng.uniform(0.45, 0.9) * n)
        cpu = 40 + 3 * _ar(rng, n)
        cpu[a:] += 15 + 5 * seed
        _write(corpus, windows, f"synthCpu/levelshift_{seed}.csv", 300, cpu, [a])

        n = 7000
        a = int(rng.uniform(0.5, 0.8) * n)
        temp = 70 + 1.5 * _ar(rng, n, 0.95) + 3 * np.sin(2 * np.pi * np.arange(n) / 288)
        temp += 12 * np.clip((np.arange(n) - a) / 250, 0, None)
        fail = a + 700
        temp[fail:] = 20 + rng.normal(0, 2, n - fail)
        _write(corpus, windows, f"synthTemp/drift_failure_{seed}.csv", 300, temp, [a, fail])

        n, day = 10320, 48  # seven weeks at thirty minutes
        t = np.arange(n)
        rides = 15000 + 8000 * np.sin(2 * np.pi * t / day - 1.5) + rng.normal(0, 700, n)
        rides += 3000 * (((t // day) % 7) < 5)
        holiday = int(rng.uniform(0.3, 0.9) * (n // day)) * day
        rides[holiday : holiday + day] *= 0.5
        _write(corpus, windows, f"synthTaxi/holiday_{seed}.csv", 1800, rides, [holiday])

        n = 4032
        a = int(rng.uniform(0.4, 0.9) * n)
        latency = 120 * np.exp(rng.normal(0, 0.3, n))
        spikes = rng.random(n) < 0.005
        latency[spikes] *= rng.uniform(3, 6, spikes.sum())
        latency[a : a + 24] *= 3.0
        _write(corpus, windows, f"synthLatency/outage_{seed}.csv", 300, latency, [a])

        quiet = 50 + 10 * np.sin(2 * np.pi * np.arange(n) / 288) + 2 * _ar(rng, n)
        _write(corpus, windows, f"synthQuiet/noanomaly_{seed}.csv", 300, quiet, [])

        # Traffic speeds from a roadside sensor: irregular intervals with dropped readings,
        # weekday rush-hour slowdowns, and a closure (speeds near 12) off-peak.
        n = 2500
        offsets = np.cumsum(rng.choice([240, 300, 300, 300, 360, 600, 900], n))
        hour = (offsets % 86400) / 3600
        weekday = ((offsets // 86400) % 7) < 5
        rush = np.exp(-((hour - 8) ** 2) / 2) + np.exp(-((hour - 17.5) ** 2) / 2)
        speed = 62 + rng.normal(0, 3, n) - 25 * weekday * rush
        a = _onset(rng, n)
        speed[a : a + 30] = 12 + rng.normal(0, 3, 30)
        _write(corpus, windows, f"synthTraffic/speed_{seed}.csv", offsets, np.round(speed), [a])

        # Disk write bytes: lognormal with sigma 1 (routine bursts of 20x the median), and
        # two hours of ten times the usual rate.
        n = 4032
        disk = np.exp(rng.normal(15, 1.0, n))
        a = _onset(rng, n)
        disk[a : a + 24] *= 10
        _write(corpus, windows, f"synthDisk/write_bytes_{seed}.csv", 300, disk, [a])

        # A CPU percentage exported with one decimal (about one point in ten repeats, busy
        # hours every afternoon) whose exporter gets stuck on its last value for 17 hours.
        cycle = np.sin(2 * np.pi * np.arange(n) / 288) > 0.7
        cpu = np.round(2 + 0.4 * _ar(rng, n, 0.5) + 0.8 * cycle, 1)
        a = _onset(rng, n)
        cpu[a : a + 200] = cpu[a - 1]
        _write(corpus, windows, f"synthStuck/cpu_{seed}.csv", 300, cpu, [a])

        # A key-value latency that keeps its mean but whose noise quadruples for 6 hours.
        key = 100 + 2 * rng.normal(0, 1, n)
        a = _onset(rng, n)
        key[a : a + 72] = 100 + 8 * rng.normal(0, 1, 72)
        _write(corpus, windows, f"synthVariance/key_latency_{seed}.csv", 300, key, [a])
    (corpus / "combined_windows.json").write_text(json.dumps(windows, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "archetypes")
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args(argv)
    if not SCORER.exists():
        print(f"the NAB scorer is missing: {SCORER}", file=sys.stderr)
        return 2
    shutil.rmtree(args.out, ignore_errors=True)
    corpus, scored = args.out / "corpus", args.out / "scored"
    build_corpus(corpus, args.seeds)
    run_csv_files(sorted((corpus / "data").glob("*/*.csv")), scored)
    print("all archetypes:")
    subprocess.run([sys.executable, str(SCORER), str(corpus), str(scored)], check=True)
    for name in ARCHETYPES:
        result = subprocess.run(
            [sys.executable, str(SCORER), str(corpus), str(scored), "--only", f"{name},synthQuiet"],
            check=True,
            capture_output=True,
            text=True,
        )
        print(f"{name}: {result.stdout.splitlines()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

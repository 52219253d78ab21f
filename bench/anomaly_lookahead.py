"""How much of the gap to ARTime on NAB is information a live detector does not have.

    .venv/bin/python bench/anomaly_lookahead.py [--nab ../shared/data/nab]

NAB hands every detector the minimum and maximum of the whole file before its first
point (`inputMin` / `inputMax` in NAB's detector base class). ARTime normalises each
value by that range and flattens every deviation smaller than 7.5 % of it (its
`discretize_chomp`), so on a Twitter volume whose largest burst is the labelled one,
the routine bursts never register. Our engine is causal: the score at t uses only data
up to t (issue 3), so it cannot know the file's range.

This script scores the NAB development subset as `make eval-anomalies` does, then again
with the file-wide range applied after the fact: a point whose deviation from the
engine's expected value is below `fraction` of the file's range scores 0 (flatlines and
missing data excepted). It is an estimate of what the look-ahead is worth to this
engine, not a mode of the engine: nothing here changes what `detect_anomalies` or the
scheduled job compute.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalies.engine import StreamingDetector
from anomalies.engine.csv_runner import read_series_csv

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NAB = ROOT.parent / "shared" / "data" / "nab"
FRACTIONS = (0.05, 0.075, 0.1)
# Surprisal of the pattern family's "the data stopped" part that counts as a stall: such a
# point has no deviation, so the range says nothing about it.
STALLED_SURPRISAL = 3.0


def _scorer(nab: Path):
    path = nab.parents[1] / "tools" / "nab_score.py"
    spec = importlib.util.spec_from_file_location("nab_score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _windows(nab: Path) -> dict:
    path = nab / "labels" / "combined_windows.json"
    return json.loads((path if path.exists() else nab / "combined_windows.json").read_text())


def _profiles(scorer, files: list, scores: list[np.ndarray]) -> dict[str, float]:
    """The three NAB profiles, threshold optimised over all files (as nab_score.py does)."""
    out = {}
    for profile, (tp_w, fn_w, fp_w) in scorer.PROFILES.items():
        rows = []
        for (rel, stamps, windows), score in zip(files, scores, strict=True):
            rounded = [round(float(x), 6) for x in score]
            rows.extend(scorer.rows_for_file(stamps, rounded, windows, rel, tp_w, fp_w))
        (raw, _), n_windows = scorer.best_score(rows, fn_w)
        null, perfect = -fn_w * n_windows, tp_w * n_windows
        out[profile] = 100.0 * (raw - null) / (perfect - null)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nab", type=Path, default=DEFAULT_NAB)
    args = parser.parse_args(argv)
    if not (args.nab / "data").is_dir():
        print(f"no NAB data under {args.nab}", file=sys.stderr)
        return 2
    scorer = _scorer(args.nab)
    files, epochs, values = [], [], []
    for rel, windows in sorted(_windows(args.nab).items()):
        raw_ts, epoch, v, _ = read_series_csv(args.nab / "data" / rel)
        labelled = [(a.replace(".000000", ""), b.replace(".000000", "")) for a, b in windows]
        files.append((rel, list(raw_ts), labelled))
        epochs.append(epoch)
        values.append(v)
    # One pass for every file, each its own fleet, as `detect_anomalies` scores them.
    width = max(map(len, values))
    ts = np.full((len(values), width), np.nan)
    vs = np.full((len(values), width), np.nan)
    for i, (e, v) in enumerate(zip(epochs, values, strict=True)):
        ts[i, : len(e)], vs[i, : len(v)] = e, v
    result = StreamingDetector(len(values), fleets=np.arange(len(values))).update(ts, vs)
    lengths = [len(v) for v in values]
    causal = [result.scores[i, :n] for i, n in enumerate(lengths)]
    print("causal (the engine):", _format(_profiles(scorer, files, causal)))
    for fraction in FRACTIONS:
        chomped = []
        for i, (score, v) in enumerate(zip(causal, values, strict=True)):
            n = lengths[i]
            immaterial = np.abs(v - result.expected[i, :n]) < fraction * (
                np.nanmax(v) - np.nanmin(v)
            )
            immaterial &= result.stalled[i, :n] < STALLED_SURPRISAL
            chomped.append(np.where(immaterial, 0.0, score))
        scores = _profiles(scorer, files, chomped)
        print(f"with the file's range, deviations under {fraction:.1%} dropped:", _format(scores))
    return 0


def _format(scores: dict[str, float]) -> str:
    return ", ".join(f"{profile} {value:.1f}" for profile, value in scores.items())


if __name__ == "__main__":
    raise SystemExit(main())

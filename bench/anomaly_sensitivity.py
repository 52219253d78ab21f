"""What an operator's sensitivity (engine/tuning.py) does on real series: alerts raised,
labelled windows found and false alarms, on the NAB development subset.

    .venv/bin/python bench/anomaly_sensitivity.py [--nab ../shared/data/nab]

Every file is scored under "low", "medium" (the default) and "high", each its own fleet as
`detect_anomalies` scores them. An alert is a point whose score reaches the detector's
alert level (after the alert pause, as the scheduled job opens anomalies); a window is
found when an alert falls in it, and an alert outside every window is a false alarm.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalies.engine import DetectorConfig, Tuning, score_many
from anomalies.engine.csv_runner import read_series_csv
from anomalies.engine.tuning import SENSITIVITIES

DEFAULT_NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nab", type=Path, default=DEFAULT_NAB)
    args = parser.parse_args(argv)
    labels = args.nab / "combined_windows.json"
    if not labels.exists():
        print(f"no NAB labels at {labels}", file=sys.stderr)
        return 2
    files = sorted(json.loads(labels.read_text()).items())
    epochs, values, windows = [], [], []
    for rel, spans in files:
        _, epoch, v, _ = read_series_csv(args.nab / "data" / rel)
        epochs.append(epoch)
        values.append(v)
        windows.append(
            [
                (pd.Timestamp(a, tz="UTC").timestamp(), pd.Timestamp(b, tz="UTC").timestamp())
                for a, b in spans
            ]
        )
    weeks = sum((e[-1] - e[0]) for e in epochs) / (7 * 86400)
    alert = DetectorConfig().alert_score
    n_windows = sum(map(len, windows))
    print(f"{len(files)} files, {n_windows} labelled windows, {weeks:.0f} series-weeks")
    print("| sensitivity | alerts | windows found | false alarms | false alarms a series-week |")
    print("|---|---|---|---|---|")
    for sensitivity in SENSITIVITIES:
        scores = score_many(
            epochs, values, independent=True, tunings=[Tuning(sensitivity)] * len(files)
        )
        alerts = found = false = 0
        for e, s, spans in zip(epochs, scores, windows, strict=True):
            at = e[s >= alert]
            inside = np.zeros(at.size, bool)
            for a, b in spans:
                hit = (at >= a) & (at <= b)
                found += bool(hit.any())
                inside |= hit
            alerts += at.size
            false += int((~inside).sum())
        print(
            f"| {sensitivity} | {alerts} | {found} / {n_windows} | {false} | {false / weeks:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

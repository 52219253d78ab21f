"""Run the engine over CSV files of `timestamp,value` (the `detect_anomalies` command's body).

Output goes to `<out_dir>/<parent folder>/<file name>` with the columns
`timestamp,value,anomaly_score`, the layout the NAB scorer reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import DetectorConfig, score_many


class CsvInputError(ValueError):
    """A CSV file that cannot be scored, with the reason in the message."""


class CsvOutputError(OSError):
    """The output directory cannot be written, with the path in the message."""


def read_series_csv(path: Path) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(original timestamp strings, epoch seconds, values) of a `timestamp,value` CSV."""
    try:
        frame = pd.read_csv(path, dtype={"timestamp": str})
    except pd.errors.EmptyDataError as exc:
        raise CsvInputError(
            f"{path}: the file is empty (expected a timestamp,value header)"
        ) from exc
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CsvInputError(f"{path}: cannot read CSV ({exc})") from exc
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise CsvInputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    parsed = pd.to_datetime(frame["timestamp"], errors="coerce", utc=True)
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0]) + 2
        raise CsvInputError(f"{path}: line {row}: timestamp is not a date")
    epoch = (parsed - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    if np.any(np.diff(epoch) < 0):
        raise CsvInputError(f"{path}: timestamps must be in increasing order")
    # An empty cell is a missing point (scored as missing data); text is a broken export.
    values = pd.to_numeric(frame["value"], errors="coerce")
    garbled = values.isna() & frame["value"].notna()
    if garbled.any():
        row = int(np.flatnonzero(garbled.to_numpy())[0])
        raise CsvInputError(
            f"{path}: line {row + 2}: value {frame['value'].iloc[row]!r} is not a number"
        )
    return frame["timestamp"], epoch, values.to_numpy(dtype=float)


def run_csv_files(
    paths: list[Path], out_dir: Path, config: DetectorConfig | None = None
) -> list[Path]:
    """Score every file (all in one vectorised pass) and write the results; returns outputs.

    Files are independent series: each learns its own model, so a file's scores do not
    depend on which other files are scored with it. Every input is read and validated
    before anything is written, so a bad file leaves no half-written output directory.
    """
    out_dir = Path(out_dir)
    targets: dict[Path, Path] = {}
    for p in map(Path, paths):
        target = out_dir / p.parent.name / p.name
        if target in targets:
            raise CsvInputError(
                f"{targets[target]} and {p} would both be written to {target} "
                "(the output keeps only the parent folder's name)"
            )
        targets[target] = p
    loaded = [read_series_csv(p) for p in targets.values()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CsvOutputError(f"{out_dir}: cannot create ({exc.strerror or exc})") from exc
    scores = score_many(
        [e for _, e, _ in loaded], [v for _, _, v in loaded], config, independent=True
    )
    written = []
    for (raw_ts, _, values), score, target in zip(loaded, scores, targets, strict=True):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"timestamp": raw_ts, "value": values, "anomaly_score": score}).to_csv(
                target, index=False, float_format="%.6f"
            )
        except OSError as exc:
            raise CsvOutputError(f"{target}: cannot write ({exc.strerror or exc})") from exc
        written.append(target)
    return written

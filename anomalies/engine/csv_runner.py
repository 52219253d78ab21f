"""Run the engine over CSV files of `timestamp,value` (the `detect_anomalies` command's body).

Output goes to `<out_dir>/<parent folder>/<file name>` with the columns
`timestamp,value,anomaly_score`, the layout the NAB scorer reads. The timestamp and value
columns are written back exactly as read: a value of 1.234e-7 is not rounded to 0.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import DetectorConfig, score_many


class CsvInputError(ValueError):
    """A CSV file that cannot be scored, with the reason in the message."""


class CsvOutputError(OSError):
    """The output directory cannot be written, with the path in the message."""


class SeriesCsv(NamedTuple):
    raw_timestamps: pd.Series  # the cells as written, for the output
    epoch: np.ndarray  # seconds since 1970, UTC
    values: np.ndarray  # floats, NaN for an empty cell (a missing point)
    raw_values: pd.Series  # the cells as written, for the output


def read_series_csv(path: Path) -> SeriesCsv:
    """One `timestamp,value` file, validated: ISO 8601 times in order, numbers."""
    try:
        frame = pd.read_csv(path, dtype={"timestamp": str, "value": str})
    except pd.errors.EmptyDataError as exc:
        raise CsvInputError(
            f"{path}: the file is empty (expected a timestamp,value header)"
        ) from exc
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CsvInputError(f"{path}: cannot read CSV ({exc})") from exc
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise CsvInputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    if frame.empty:
        raise CsvInputError(f"{path}: no data rows after the header")
    # ISO 8601 per cell, not a format guessed from the first row: Python's isoformat()
    # drops a zero fraction, so one file mixes "...:00" and "...:00.500000".
    parsed = pd.to_datetime(frame["timestamp"], errors="coerce", utc=True, format="ISO8601")
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise CsvInputError(
            f"{path}: line {row + 2}: timestamp {frame['timestamp'].iloc[row]!r} "
            "is not an ISO 8601 date and time"
        )
    epoch = (parsed - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    # A repeated timestamp is accepted (real exports have them: NAB's exchange-2 files
    # do); one that goes back in time is a file sorted wrongly or two files concatenated.
    backwards = np.flatnonzero(np.diff(epoch) < 0)
    if backwards.size:
        raise CsvInputError(
            f"{path}: line {int(backwards[0]) + 3}: timestamp is earlier than the line "
            "before it (timestamps must be in increasing order)"
        )
    # An empty cell is a missing point (scored as missing data); text is a broken export.
    values = pd.to_numeric(frame["value"], errors="coerce")
    garbled = values.isna() & frame["value"].notna()
    if garbled.any():
        row = int(np.flatnonzero(garbled.to_numpy())[0])
        raise CsvInputError(
            f"{path}: line {row + 2}: value {frame['value'].iloc[row]!r} is not a number"
        )
    return SeriesCsv(
        frame["timestamp"], epoch, values.to_numpy(dtype=float), frame["value"].fillna("")
    )


def output_targets(paths: list[Path], out_dir: Path) -> dict[Path, Path]:
    """{output path: input path}, refusing any output that would overwrite an input.

    The parent folder's name is taken from the resolved path, so `../x.csv` cannot write
    outside `out_dir`, and `--out-dir .` over `data/x.csv` is refused, not a silent
    overwrite of the data being scored.
    """
    out_dir = Path(out_dir)
    inputs = {Path(p).resolve() for p in paths}
    targets: dict[Path, Path] = {}
    for p in map(Path, paths):
        resolved = p.resolve()
        target = out_dir / resolved.parent.name / resolved.name
        if target in targets:
            raise CsvInputError(
                f"{targets[target]} and {p} would both be written to {target} "
                "(the output keeps only the parent folder's name)"
            )
        if target.resolve() in inputs:
            raise CsvInputError(f"{target} is an input file: choose another --out-dir")
        targets[target] = p
    return targets


def run_csv_files(
    paths: list[Path], out_dir: Path, config: DetectorConfig | None = None
) -> list[Path]:
    """Score every file (all in one vectorised pass) and write the results; returns outputs.

    Files are independent series: each learns its own model, so a file's scores do not
    depend on which other files are scored with it. Every input is read and validated,
    and every output written to a temporary file beside its target, before any target is
    replaced: a bad file or a failed write leaves no half-written result.
    """
    out_dir = Path(out_dir)
    targets = output_targets(paths, out_dir)
    loaded = [read_series_csv(p) for p in targets.values()]
    for folder in dict.fromkeys(t.parent for t in targets):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CsvOutputError(f"{folder}: cannot create ({exc.strerror or exc})") from exc
    for target in targets:
        if target.exists() and not target.is_file():
            raise CsvOutputError(f"{target}: exists and is not a file")
    scores = score_many(
        [s.epoch for s in loaded], [s.values for s in loaded], config, independent=True
    )
    staged: list[tuple[Path, Path]] = []
    try:
        for series, score, target in zip(loaded, scores, targets, strict=True):
            temporary = target.with_name(f".{target.name}.partial")
            try:
                pd.DataFrame(
                    {
                        "timestamp": series.raw_timestamps,
                        "value": series.raw_values,
                        "anomaly_score": np.char.mod("%.6f", score),
                    }
                ).to_csv(temporary, index=False)
            except OSError as exc:
                raise CsvOutputError(f"{target}: cannot write ({exc.strerror or exc})") from exc
            staged.append((temporary, target))
        for temporary, target in staged:
            os.replace(temporary, target)
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
    return list(targets)

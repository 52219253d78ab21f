"""``manage.py forecast FILE.csv --horizon N --out OUT.csv``: the engine on a CSV, no database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from forecasting.engine import select_and_forecast


def read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``timestamp,value`` CSV; every failure names the file, the row or the column."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError as exc:
        raise CommandError(f"{path}: no such file") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: not a readable CSV ({exc})") from exc
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise CommandError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    ts = pd.to_datetime(frame["timestamp"], errors="coerce", utc=True)
    values = pd.to_numeric(frame["value"], errors="coerce")
    for name, parsed in (("timestamp", ts), ("value", values)):
        bad = parsed.isna() & frame[name].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
            raise CommandError(
                f"{path}: line {row}: unreadable {name} {frame[name].iloc[row - 2]!r}"
            )
    keep = ts.notna() & values.notna()
    # pandas picks the resolution (s, ms, ns) per input: measure seconds explicitly
    epoch = ((ts[keep] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(float)
    return epoch, values[keep].to_numpy(dtype=float)


class Command(BaseCommand):
    help = (
        "Forecast the N steps after the last row of a timestamp,value CSV and write "
        "timestamp,yhat,yhat_lower,yhat_upper (80% interval)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--horizon", type=int, required=True, help="steps to forecast")
        parser.add_argument("--out", type=Path, required=True)

    def handle(self, *args, file: Path, horizon: int, out: Path, **options) -> None:
        import pandas as pd

        if horizon < 1:
            raise CommandError("--horizon must be a positive number of steps")
        ts, values = read_series(file)
        try:
            result = select_and_forecast(ts, values, horizon)
        except ValueError as exc:
            raise CommandError(f"{file}: {exc}") from exc
        frame = pd.DataFrame(
            {
                "timestamp": pd.to_datetime(
                    np.round(result.timestamps * 1e9).astype("int64")
                ).strftime("%Y-%m-%d %H:%M:%S"),
                "yhat": result.yhat,
                "yhat_lower": result.lower80,
                "yhat_upper": result.upper80,
            }
        )
        try:
            frame.to_csv(out, index=False)
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc}") from exc
        self.stdout.write(
            f"{file}: {horizon} steps with {result.model} (backtest MASE "
            f"{result.chosen.mase:.3f} vs {result.baseline.model} {result.baseline.mase:.3f}) "
            f"-> {out}"
        )

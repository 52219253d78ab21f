"""Backtest the engine against the seasonal naive on CSV series (e.g. NAB).

    python -m forecasting.engine.evaluate ../shared/data/nab/data --horizon-hours 24 --origins 3

For every ``timestamp,value`` CSV under the given paths, the last
``origins x horizon`` points are held out: the engine is run on the history
before each origin (model selection included, nothing from the future), and
its forecast is compared with the actual values and with the seasonal naive
forecast (daily period) from the same origin. Printed per series and overall:
MASE of both, the ratio engine / seasonal naive (below 1 is better), sMAPE,
and the share of actual values inside the 80% and 95% intervals.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forecasting.engine.calendar import DAY, regularize
from forecasting.engine.metrics import mase_scale, smape
from forecasting.engine.selection import select_and_forecast


@dataclass(frozen=True)
class SeriesEvaluation:
    """Scores of the engine and of the seasonal naive on one series, over all origins."""

    name: str
    points: int
    mase_engine: float
    mase_naive: float
    smape_engine: float
    smape_naive: float
    inside80: int
    inside95: int
    total: int
    models: tuple[str, ...]


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``timestamp,value`` CSV into epoch seconds and floats."""
    import pandas as pd

    frame = pd.read_csv(path)
    if not {"timestamp", "value"} <= set(frame.columns):
        raise ValueError(f"{path}: expected columns timestamp,value")
    ts = pd.to_datetime(frame["timestamp"]).astype("datetime64[ns]").astype("int64") / 1e9
    return ts.to_numpy(dtype=float), frame["value"].to_numpy(dtype=float)


def evaluate_series(
    name: str,
    timestamps: np.ndarray,
    values: np.ndarray,
    horizon_seconds: float,
    origins: int,
    include_prophet: bool = False,
) -> SeriesEvaluation | None:
    """Hold out ``origins`` consecutive windows at the end and score each forecast."""
    grid, y = regularize(timestamps, values)
    step = float(grid[1] - grid[0])
    horizon = max(1, round(horizon_seconds / step))
    daily = round(DAY / step) if abs(DAY / step - round(DAY / step)) < 1e-9 else 1
    daily = daily if y.size > 4 * daily + origins * horizon else 1
    err_e, err_n, ape_e, ape_n = [], [], [], []
    inside80 = inside95 = total = 0
    models = []
    for k in range(origins, 0, -1):
        cut = y.size - k * horizon
        if cut < 4 * max(daily, 2):
            continue
        history, actual = y[:cut], y[cut : cut + horizon]
        result = select_and_forecast(
            grid[:cut], history, horizon, step=step, include_prophet=include_prophet
        )
        naive = history[cut - daily + (np.arange(horizon) % daily)]
        scale = mase_scale(history, daily)
        err_e.append(np.mean(np.abs(actual - result.yhat)) / scale)
        err_n.append(np.mean(np.abs(actual - naive)) / scale)
        ape_e.append(smape(actual, result.yhat))
        ape_n.append(smape(actual, naive))
        inside80 += int(np.sum((actual >= result.lower80) & (actual <= result.upper80)))
        inside95 += int(np.sum((actual >= result.lower95) & (actual <= result.upper95)))
        total += actual.size
        models.append(result.model)
    if not err_e:
        return None
    return SeriesEvaluation(
        name=name,
        points=int(y.size),
        mase_engine=float(np.mean(err_e)),
        mase_naive=float(np.mean(err_n)),
        smape_engine=float(np.mean(ape_e)),
        smape_naive=float(np.mean(ape_n)),
        inside80=inside80,
        inside95=inside95,
        total=total,
        models=tuple(models),
    )


def _evaluate_file(args: tuple[str, float, int, bool]) -> SeriesEvaluation | None:
    path, horizon_seconds, origins, include_prophet = args
    ts, ys = read_csv(Path(path))
    return evaluate_series(Path(path).stem, ts, ys, horizon_seconds, origins, include_prophet)


def summarize(rows: list[SeriesEvaluation]) -> dict[str, float]:
    """Overall figures: M4-style ratio of mean MASEs, geometric mean of ratios, coverage."""
    mase_e = np.array([r.mase_engine for r in rows])
    mase_n = np.array([r.mase_naive for r in rows])
    ratios = np.array(
        [e / n for e, n in zip(mase_e, mase_n, strict=True) if n > 0 and e > 0 and np.isfinite(e)]
    )
    total = sum(r.total for r in rows)
    return {
        "series": len(rows),
        "mase_engine": float(mase_e.mean()),
        "mase_seasonal_naive": float(mase_n.mean()),
        "mase_ratio": float(mase_e.mean() / mase_n.mean()),
        "geomean_ratio": float(np.exp(np.mean(np.log(ratios)))) if ratios.size else float("nan"),
        "series_better": int(np.sum(mase_e < mase_n)),
        "smape_engine": float(np.mean([r.smape_engine for r in rows])),
        "smape_seasonal_naive": float(np.mean([r.smape_naive for r in rows])),
        "coverage80": sum(r.inside80 for r in rows) / total,
        "coverage95": sum(r.inside95 for r in rows) / total,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="CSV files or folders searched recursively")
    parser.add_argument("--horizon-hours", type=float, default=24.0)
    parser.add_argument("--origins", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--prophet", action="store_true", help="add Prophet to the pool")
    args = parser.parse_args(argv)
    files: list[Path] = []
    for raw in args.paths:
        p = Path(raw)
        if not p.exists():
            print(f"{p}: no such file or folder", file=sys.stderr)
            return 2
        files += sorted(p.rglob("*.csv")) if p.is_dir() else [p]
    if not files:
        print("no CSV files found", file=sys.stderr)
        return 2
    work = [(str(f), args.horizon_hours * 3600.0, args.origins, args.prophet) for f in files]
    started = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_evaluate_file, work))
    else:
        results = [_evaluate_file(w) for w in work]
    rows = [r for r in results if r is not None]
    print(f"{'series':40} {'MASE':>7} {'SNaive':>7} {'ratio':>6} {'cov80':>6}  models")
    for r in rows:
        ratio = r.mase_engine / r.mase_naive if r.mase_naive > 0 else float("nan")
        print(
            f"{r.name[:40]:40} {r.mase_engine:7.3f} {r.mase_naive:7.3f} {ratio:6.3f} "
            f"{r.inside80 / r.total:6.2f}  {', '.join(sorted(set(r.models)))}"
        )
    summary = summarize(rows)
    print()
    for key, value in summary.items():
        print(f"{key:22} {value:.4f}" if isinstance(value, float) else f"{key:22} {value}")
    print(f"{'seconds':22} {time.perf_counter() - started:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

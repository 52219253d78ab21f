"""Interval calibration on simulated series with known answers (not part of the test suite).

    .venv/bin/python bench/forecasting_intervals.py [--series 40] [--jobs 1] [--settings 0 1]

NAB says how the intervals do on a few real series, but not why they miss: its future is
one draw. Here each family is a process whose conditional distribution is known, so the
future can be drawn as often as needed and the figures can be read against an answer.
For every family and setting the script simulates ``--series`` series, forecasts the last
``horizon`` points from the history before them (the full engine: seasonality test,
backtest, selection, calibration) and prints, per interval level:

* ``rep``  the out-of-sample coverage the engine reports for itself (``chosen.coverage80``),
  averaged over the series that report the level (``n`` of them);
* ``real`` the share of the simulated future inside the interval (every step weighs the same,
  as in the reported figure), and ``late`` the same over the last quarter of the steps;
* ``width`` the mean interval width over the width of the oracle interval (the true
  conditional quantiles of the process; for the random walk with noise the steady-state
  Kalman variance). Below 1 with coverage under the level is over-confidence; far above 1
  is an interval too wide to be useful.

Families (level 500 so that nothing is clipped at zero): ``seasonal`` (daily cycle + white
noise), ``seasonal_ar1`` (the cycle + AR(1) noise, phi 0.9), ``rw_cycle`` (random walk +
cycle + noise), ``random_walk`` (no cycle, no noise), ``trend_cycle`` (straight trend +
cycle + noise) and ``slope_change`` (the slope changes at 60-90% of the history). Settings:
hourly 45 days one day and one week ahead, daily 120 days and 60 days (a weekly cycle) 30
days ahead, hourly 60 days 30 days ahead (the demo's medium horizon: the horizon is half the
history). Seeds are fixed: the same code gives the same figures.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecasting.engine import select_and_forecast  # noqa: E402
from forecasting.engine.metrics import mase_scale  # noqa: E402

HOUR, DAY = 3600.0, 86_400.0
FAMILIES = ("seasonal", "seasonal_ar1", "rw_cycle", "random_walk", "trend_cycle", "slope_change")


@dataclass(frozen=True)
class Setting:
    """A grain, a history length and a horizon, as the scheduled forecasts use them."""

    name: str
    step: float
    history: int
    horizon: int
    period: int


SETTINGS = (
    Setting("1h 45d -> 24h", HOUR, 45 * 24, 24, 24),
    Setting("1h 45d -> 168h", HOUR, 45 * 24, 168, 24),
    Setting("1d 120d -> 30d", DAY, 120, 30, 7),
    Setting("1d 60d -> 30d", DAY, 60, 30, 7),
    Setting("1h 60d -> 30d", HOUR, 60 * 24, 30 * 24, 24),
)


def _local_level_variance(q: float, r: float, horizon: int) -> np.ndarray:
    """Forecast variance of a random walk (increment variance q) seen through noise r."""
    p = q
    for _ in range(500):  # steady state of the filtered level's variance
        p = (p + q) * r / (p + q + r) if r > 0 else 0.0
    return p + q * np.arange(1, horizon + 1) + r


def simulate(family: str, setting: Setting, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One series of ``history + horizon`` points and the oracle sd of each future step."""
    rng = np.random.default_rng(seed)
    n, h, m = setting.history + setting.horizon, setting.horizon, setting.period
    i = np.arange(n)
    cycle = rng.uniform(5, 20) * np.sin(2 * np.pi * (i + rng.integers(m)) / m)
    sigma = rng.uniform(1, 4)
    steps = np.arange(1, h + 1)
    if family == "seasonal":
        y, sd = cycle + rng.normal(0, sigma, n), np.full(h, sigma)
    elif family == "seasonal_ar1":
        phi = 0.9
        shocks = rng.normal(0, sigma * np.sqrt(1 - phi**2), n)
        ar = np.zeros(n)
        for t in range(1, n):
            ar[t] = phi * ar[t - 1] + shocks[t]
        y = cycle + ar
        sd = sigma * np.sqrt(1 - phi ** (2 * steps))
    elif family == "rw_cycle":
        q = rng.uniform(0.3, 1.0) * sigma
        y = cycle + np.cumsum(rng.normal(0, q, n)) + rng.normal(0, sigma, n)
        sd = np.sqrt(_local_level_variance(q**2, sigma**2, h))
    elif family == "random_walk":
        y, sd = np.cumsum(rng.normal(0, sigma, n)), sigma * np.sqrt(steps)
    elif family == "trend_cycle":
        slope = rng.choice([-1, 1]) * rng.uniform(0.2, 1.0) * sigma / m
        y, sd = cycle + slope * i + rng.normal(0, sigma, n), np.full(h, sigma)
    elif family == "slope_change":
        slope = rng.uniform(0.2, 1.0) * sigma / m
        bend = int(rng.uniform(0.6, 0.9) * setting.history)
        after = rng.choice([-1.0, 0.0, 2.0]) * slope
        trend = slope * i + (after - slope) * np.maximum(i - bend, 0)
        y, sd = cycle + trend + rng.normal(0, sigma, n), np.full(h, sigma)
    else:
        raise ValueError(family)
    return 500.0 + y, sd


@dataclass(frozen=True)
class Outcome:
    """One forecast scored against its simulated future."""

    rep80: float
    rep95: float
    real80: float
    real95: float
    late80: float
    late95: float
    width80: float
    width95: float
    mase: float


def run_one(args: tuple[str, int, int]) -> Outcome:
    """Forecast one simulated series and score it against its future and its oracle."""
    family, setting_index, seed = args
    setting = SETTINGS[setting_index]
    y, sd = simulate(family, setting, seed)
    hist, fut = y[: setting.history], y[setting.history :]
    ts = np.arange(y.size) * setting.step
    result = select_and_forecast(ts[: setting.history], hist, setting.horizon, step=setting.step)
    late = slice(-max(1, setting.horizon // 4), None)

    def inside(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (fut >= lo) & (fut <= hi)

    in80 = inside(result.lower80, result.upper80)
    in95 = inside(result.lower95, result.upper95)
    oracle80, oracle95 = 2 * norm.ppf(0.9) * sd, 2 * norm.ppf(0.975) * sd
    return Outcome(
        rep80=result.chosen.coverage80,
        rep95=result.chosen.coverage95,
        real80=float(in80.mean()),
        real95=float(in95.mean()),
        late80=float(in80[late].mean()),
        late95=float(in95[late].mean()),
        width80=float(np.mean(result.upper80 - result.lower80) / np.mean(oracle80)),
        width95=float(np.mean(result.upper95 - result.lower95) / np.mean(oracle95)),
        mase=float(np.mean(np.abs(fut - result.yhat)) / mase_scale(hist, setting.period)),
    )


def _reported(values: list[float]) -> tuple[float, int]:
    finite = [v for v in values if np.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("nan")), len(finite)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=40, help="series per family and setting")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument(
        "--settings", nargs="+", type=int, default=list(range(len(SETTINGS))),
        help=f"indices into {[s.name for s in SETTINGS]}",
    )  # fmt: skip
    args = parser.parse_args(argv)
    cells = [(f, s) for s in args.settings for f in args.families]
    # a cell's seeds depend on the cell only, so a subset of the table reproduces its rows
    work = [
        (f, s, 100_000 * s + 1000 * FAMILIES.index(f) + seed)
        for f, s in cells
        for seed in range(args.series)
    ]
    started = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(run_one, work, chunksize=8))
    else:
        outcomes = [run_one(w) for w in work]
    print(
        f"{'setting':15} {'family':13} | {'rep80':>5} {'n':>3} {'real80':>6} {'late80':>6} "
        f"{'width':>5} | {'rep95':>5} {'n':>3} {'real95':>6} {'late95':>6} {'width':>5} | MASE"
    )
    gaps: dict[str, list[float]] = {"real80": [], "real95": [], "honest80": [], "honest95": []}
    for k, (family, s) in enumerate(cells):
        rows = outcomes[k * args.series : (k + 1) * args.series]
        rep80, n80 = _reported([r.rep80 for r in rows])
        rep95, n95 = _reported([r.rep95 for r in rows])
        real80, real95 = np.mean([r.real80 for r in rows]), np.mean([r.real95 for r in rows])
        gaps["real80"].append(abs(real80 - 0.8))
        gaps["real95"].append(abs(real95 - 0.95))
        if n80:
            gaps["honest80"].append(abs(rep80 - real80))
        if n95:
            gaps["honest95"].append(abs(rep95 - real95))
        print(
            f"{SETTINGS[s].name:15} {family:13} | {rep80:5.2f} {n80:3d} {real80:6.3f} "
            f"{np.mean([r.late80 for r in rows]):6.3f} {np.mean([r.width80 for r in rows]):5.2f} | "
            f"{rep95:5.2f} {n95:3d} {real95:6.3f} {np.mean([r.late95 for r in rows]):6.3f} "
            f"{np.mean([r.width95 for r in rows]):5.2f} | {np.mean([r.mase for r in rows]):.3f}"
        )
    print()
    print(
        "mean |realised - level|: "
        f"80% {np.mean(gaps['real80']):.3f}, 95% {np.mean(gaps['real95']):.3f}; "
        f"worst 80% {np.max(gaps['real80']):.3f}, 95% {np.max(gaps['real95']):.3f}"
    )
    print(
        "mean |reported - realised|: "
        f"80% {np.mean(gaps['honest80'] or [np.nan]):.3f}, "
        f"95% {np.mean(gaps['honest95'] or [np.nan]):.3f}"
    )
    print(f"{len(work)} forecasts in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pattern family: departures from the series' own shape rather than from its noise level.

* profile deviation: distance from what this hour of the day / week usually looks like;
* level shift: a two-sided CUSUM of the standardised residual (Page, 1954), which
  accumulates small persistent deviations that no single point would reveal;
* variance shift: log ratio of the recent residual variance to the long-run one;
* flatline: a run of repeated values, scored by flatline.py outside the calibrator;
* collapse: a positive series at a small fraction of its expected value, scored by
  collapse.py outside the calibrator;
* missing data: a gap in the timestamps or a missing value.
"""

from __future__ import annotations

import numpy as np

from .config import DetectorConfig, alpha

# Statistics, in order: profile_z, level_shift (CUSUM), variance_shift.
# Tail thresholds for calibration: one scale unit off the profile, any CUSUM excess, a
# variance ratio beyond e**0.5.
HURDLES: tuple[float, ...] = (1.0, 0.0, 0.5)


def new_pattern_state(n_series: int) -> dict[str, np.ndarray]:
    return {
        "cusum_up": np.zeros(n_series),
        "cusum_down": np.zeros(n_series),
        "variance": np.zeros(n_series),
    }


def pattern_statistics(
    state: dict[str, np.ndarray],
    y: np.ndarray,
    residual: np.ndarray,
    scale: np.ndarray,
    profile: np.ndarray,
    profile_scale: np.ndarray,
    valid: np.ndarray,
    count: np.ndarray,
    cfg: DetectorConfig,
) -> np.ndarray:
    """Raw pattern statistics, shape (series, 3), updating the running state in place."""
    z = np.where(valid, residual / scale, 0.0)
    zc = np.clip(z, -2.0 * cfg.winsor, 2.0 * cfg.winsor)
    up = np.clip(state["cusum_up"] + zc - cfg.cusum_drift, 0.0, cfg.cusum_cap)
    down = np.clip(state["cusum_down"] - zc - cfg.cusum_drift, 0.0, cfg.cusum_cap)
    state["cusum_up"] = np.where(valid, up, state["cusum_up"])
    state["cusum_down"] = np.where(valid, down, state["cusum_down"])

    a = np.maximum(alpha(cfg.medium_span), 1.0 / (count + 1.0))
    r2 = np.where(valid, residual * residual, 0.0)
    state["variance"] = np.where(
        valid, state["variance"] + a * (r2 - state["variance"]), state["variance"]
    )
    variance_shift = np.abs(np.log((state["variance"] + 1e-12) / (scale * scale + 1e-12)))

    profile_z = np.where(np.isfinite(profile) & valid, np.abs(y - profile) / profile_scale, 0.0)
    return np.stack(
        [
            np.nan_to_num(profile_z),
            np.maximum(state["cusum_up"], state["cusum_down"]),
            np.where(count > 8, variance_shift, 0.0),
        ],
        axis=1,
    )


def missing_surprisal(gap_steps: np.ndarray, missing_value: np.ndarray) -> np.ndarray:
    """Surprisal of missing data: 3 (p = 0.001) for one lost point, +1 per doubling of the gap.

    Missing data is not a statistical question: a scrape that did not happen is a fact, and
    its weight should grow with how much was lost, not with how often it happened before.
    """
    lost = np.where(missing_value, np.maximum(gap_steps, 1.0), gap_steps)
    return np.where(lost >= 1.0, 3.0 + np.log2(np.maximum(lost, 1.0)), 0.0)


# A series silent for this many of its usual steps is reported while it is silent.
SILENT_STEPS = 10


def silence_surprisal(elapsed_seconds: float, step_seconds: float) -> float:
    """Surprisal of a series that has sent nothing for `elapsed_seconds` (0 under SILENT_STEPS).

    The engine judges a gap when the next point arrives; a series that stopped sending
    would never be judged at all. The scheduled job asks this instead, on the same scale
    as the gap the engine will see when data resumes: 3 + log2 of the points lost.
    """
    if not (np.isfinite(step_seconds) and step_seconds > 0):
        return 0.0
    lost = np.floor(elapsed_seconds / step_seconds)
    if lost < SILENT_STEPS:
        return 0.0
    return float(missing_surprisal(np.array([lost]), np.array([False]))[0])


# How far an interval must be from the typical step before it moves the estimate, and by
# how much one such interval moves it.
STEP_BAND = 1.25
STEP_RATE = 0.05


def typical_step(step: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """The series' usual sampling interval after seeing interval `dt` (inf: none seen yet).

    A streaming median in log space (the "frugal" sign update): an interval more than
    `STEP_BAND` times longer (shorter) than the estimate moves it up (down) by 5 %. The
    smallest interval ever seen is what a jittered scraper makes it: one 3-minute interval
    in a 5-minute series turned every ordinary interval into "one point lost", and the
    missing-data statistic fired on every point. A regular series keeps its exact step.
    """
    first = ~np.isfinite(step)
    up = dt > STEP_BAND * step
    down = dt * STEP_BAND < step
    moved = np.where(up, step * (1 + STEP_RATE), np.where(down, step / (1 + STEP_RATE), step))
    return np.where(first, dt, moved)

"""Judging a decision after the fact: did utilisation come back into the target band?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutcomeVerdict:
    success: bool | None  # None: not enough data to judge yet
    utilization: float | None
    reason: str


def target_band(
    target_utilization: float, tolerance: float, upper_cap: float | None = 1.0
) -> tuple[float, float]:
    """The band a decision aims for: target +- tolerance x target (upper end capped at
    ``upper_cap``: 1 for a utilisation, None for a rule's metric in another unit)."""
    high = target_utilization * (1 + tolerance)
    return target_utilization * (1 - tolerance), high if upper_cap is None else min(upper_cap, high)


def judge_outcome(
    utilization_after_settle: np.ndarray,
    target_utilization: float,
    tolerance: float,
    min_samples: int = 1,
    upper_cap: float | None = 1.0,
) -> OutcomeVerdict:
    """Success when the median utilisation after the settle time lies inside the target band.

    The median, because a single sample caught mid-spike says nothing about
    whether the new capacity fits the load. Utilisation *below* the band at
    ``min_units`` still counts as a failure: the engine could not bring it in.
    """
    values = np.asarray(utilization_after_settle, dtype=float)
    # +inf is load on no capacity at all (scaled to zero): overloaded, so it is kept.
    values = values[np.isfinite(values) | (values == np.inf)]
    if values.size < min_samples or values.size == 0:
        return OutcomeVerdict(None, None, f"only {values.size} samples after the settle time")
    low, high = target_band(target_utilization, tolerance, upper_cap)
    median = float(np.median(values))
    if low <= median <= high:
        return OutcomeVerdict(
            True, median, f"median utilisation {median:.3f} in [{low:.3f}, {high:.3f}]"
        )
    side = "above" if median > high else "below"
    return OutcomeVerdict(
        False, median, f"median utilisation {median:.3f} {side} [{low:.3f}, {high:.3f}]"
    )

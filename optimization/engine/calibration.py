"""Calibrate predictions with what was realised.

Predicted impacts rest on assumptions (batching leaves one query's time, caching removes 30 % of
DB time, ...). Once operators apply recommendations and the verifier measures what happened,
each category learns two corrections:

* an **impact factor**: the median of realised / predicted savings. With few outcomes it is
  shrunk toward 1 (``prior_strength`` pseudo-outcomes that agreed with the prediction), so one
  lucky or unlucky change does not swing every future prediction.
* a **confidence map** from raw confidence to the observed success rate: isotonic regression
  (scikit-learn) once ``min_isotonic`` outcomes exist, which keeps the order of confidences but
  makes them honest; before that, the raw value shrunk toward the category's success rate.

The Brier score of raw and calibrated confidences is reported so the gain can be checked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression

MAX_RATIO = 3.0


@dataclass(frozen=True)
class Outcome:
    """A verified recommendation: what was predicted and what happened."""

    category: str
    predicted_per_day: float
    realised_per_day: float
    confidence: float
    succeeded: bool


@dataclass(frozen=True)
class CategoryCalibration:
    category: str
    outcomes: int
    impact_factor: float
    success_rate: float
    prior_strength: float
    confidence_x: list[float] = field(default_factory=list)
    confidence_y: list[float] = field(default_factory=list)

    def calibrate_confidence(self, raw: float) -> float:
        """Map a raw confidence to the one outcomes support."""
        weight = self.outcomes / (self.outcomes + self.prior_strength)
        if self.confidence_x:
            observed = float(np.interp(raw, self.confidence_x, self.confidence_y))
        else:
            observed = self.success_rate
        return float(np.clip(weight * observed + (1 - weight) * raw, 0.0, 1.0))

    def as_dict(self) -> dict:
        return dict(self.__dict__)


IDENTITY = CategoryCalibration("", 0, 1.0, 0.0, 1.0)


def calibrate(
    outcomes: Iterable[Outcome], *, prior_strength: float = 5.0, min_isotonic: int = 10
) -> dict[str, CategoryCalibration]:
    """One calibration per category from its verified outcomes."""
    by_category: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_category[outcome.category].append(outcome)
    result = {}
    for category, rows in by_category.items():
        ratios = np.array(
            [
                np.clip(r.realised_per_day / r.predicted_per_day, 0.0, MAX_RATIO)
                for r in rows
                if r.predicted_per_day > 0 and np.isfinite(r.realised_per_day)
            ]
        )
        n_ratio = ratios.size
        factor = (
            (n_ratio * float(np.median(ratios)) + prior_strength) / (n_ratio + prior_strength)
            if n_ratio
            else 1.0
        )
        confidences = np.array([r.confidence for r in rows], dtype=np.float64)
        successes = np.array([r.succeeded for r in rows], dtype=np.float64)
        xs: list[float] = []
        ys: list[float] = []
        if len(rows) >= min_isotonic and np.ptp(confidences) > 0:
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(confidences, successes)
            xs, ys = iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()
        result[category] = CategoryCalibration(
            category=category,
            outcomes=len(rows),
            impact_factor=float(factor),
            success_rate=float(successes.mean()),
            prior_strength=prior_strength,
            confidence_x=xs,
            confidence_y=ys,
        )
    return result


def brier_score(confidences: Iterable[float], succeeded: Iterable[bool]) -> float:
    """Mean squared gap between confidence and outcome (0 perfect; 0.25 = always saying 0.5)."""
    c = np.asarray(list(confidences), dtype=np.float64)
    s = np.asarray(list(succeeded), dtype=np.float64)
    if c.size == 0:
        return float("nan")
    return float(np.mean((c - s) ** 2))

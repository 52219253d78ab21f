"""Spare capacity above the forecast: where to put it and how much of it to buy.

The forecast says where load is going; the headroom above it decides how
often load still exceeds capacity. Plain target tracking buys a fixed share
(``1/target - 1``) of the *current* load, whatever the noise. Here the headroom
is ``z x scale`` where ``scale`` is the recent spread of the forecaster's own
one-step errors: calm periods get little spare capacity, noisy ones more.

``z`` is steered by :class:`HeadroomBudget` so that, over a trailing window,
the capacity bought is a fixed share of what plain target tracking at the same
target utilisation would have bought. The operator's target utilisation thus
still sets the spending; the engine decides where it helps most.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ErrorScale:
    """Robust spread of recent one-step forecast errors (IQR / 1.349, a sigma under normality).

    The IQR rather than the standard deviation because load bursts are heavy
    tailed: one spike must not buy spare capacity for a whole day.
    """

    window: int = 288
    min_errors: int = 12
    refresh_every: int = 6  # the spread of a day of errors moves slowly; quantiles cost
    errors: deque[float] = field(default_factory=deque)
    _cached: float | None = None
    _since: int = 0

    def add(self, error: float) -> None:
        self.errors.append(float(error))
        if len(self.errors) > self.window:
            self.errors.popleft()
        self._since += 1

    def scale(self) -> float | None:
        if len(self.errors) < self.min_errors:
            return None
        if self._cached is None or self._since >= self.refresh_every:
            q75, q25 = np.percentile(np.fromiter(self.errors, float), [75, 25])
            self._cached, self._since = float(q75 - q25) / 1.349, 0
        return self._cached


@dataclass
class HeadroomBudget:
    """Integral controller holding spending at ``share`` x the reference's spending.

    Multiplicative updates in log space keep ``z`` positive and make the
    correction proportional to the relative overspend (10% over and 10% under
    move ``z`` by the same factor). An additive update that let ``z`` go
    negative was measured and oscillated (docs/scaling.md).
    """

    share: float = 0.97
    gain: float = 0.5
    every_steps: int = 12
    window_steps: int = 288
    z: float = 1.5
    z_min: float = 0.05
    z_max: float = 20.0
    level_factor: float = 1.0
    level_factor_min: float = 0.3
    ours: deque[float] = field(default_factory=deque)
    reference: deque[float] = field(default_factory=deque)
    _steps: int = 0

    def observe(self, our_units: float, reference_units: float) -> None:
        self.ours.append(float(our_units))
        self.reference.append(float(reference_units))
        if len(self.ours) > self.window_steps:
            self.ours.popleft()
            self.reference.popleft()
        self._steps += 1
        if self._steps % self.every_steps == 0:
            spent, allowed = sum(self.ours), self.share * sum(self.reference)
            if spent > 0 and allowed > 0:
                self._correct(math.exp(-self.gain * math.log(spent / allowed)))

    def _correct(self, factor: float) -> None:
        """Spend less by removing headroom first; only when none is left, trust the level less.

        On sparse, spiky load (mostly zeros) the smoothed level itself sits above the
        typical step, so removing headroom alone cannot bring spending down to budget.
        The level factor goes back to 1 before headroom grows again.
        """
        if factor < 1.0:
            z = self.z * factor
            if z < self.z_min:
                self.level_factor = max(self.level_factor * z / self.z_min, self.level_factor_min)
                z = self.z_min
            self.z = z
        else:
            self.level_factor = self.level_factor * factor
            if self.level_factor > 1.0:
                self.z = min(self.z * self.level_factor, self.z_max)
                self.level_factor = 1.0

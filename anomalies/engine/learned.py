"""Machine-learning family: an isolation forest on short windows of standardised residuals.

The statistical and pattern families each look at one aspect; a window of residuals can be
odd in a way none of them measures (a spike shape that never occurs, a rise together with a
variance drop). An isolation forest (Liu et al., 2008) learns what windows normally look
like and isolates the rare ones in few splits.

One forest serves all the series of a fleet: the windows are standardised by each series'
own expected value and scale, so their normal shape is shared, and one model scores 10,000
new points in a single call, where 10,000 per-series forests would each pay scikit-learn's
per-call overhead. The scheduled job runs one fleet (every monitored series); an offline run
over unrelated CSV files gives each file a fleet of its own, so that a file's scores do not
depend on which other files are on the command line. A forest is refitted on a schedule from
a reservoir of recent windows, never on the points it scores, so scores stay causal; each
series then calibrates the forest's output against its own history like any other method.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import joblib
import numpy as np
from sklearn.ensemble import IsolationForest

from .config import DetectorConfig

FEATURE_LAGS = 4
N_FEATURES = FEATURE_LAGS + 2
# Isolation scores above 0.5 are the ones the forest itself calls anomalous: calibrate that tail.
HURDLE = 0.5


@dataclass
class Fleet:
    """The learned model shared by a group of series: its forest and its reservoir of windows."""

    forest: IsolationForest | None = None
    reservoir: np.ndarray = field(default_factory=lambda: np.zeros((0, N_FEATURES), np.float32))


def fit_forest(features: np.ndarray, cfg: DetectorConfig) -> IsolationForest:
    """Fit a forest on the given windows (seeded: the same data gives the same model)."""
    forest = IsolationForest(
        n_estimators=cfg.ml_trees,
        max_samples=min(cfg.ml_max_samples, features.shape[0]),
        random_state=0,
    )
    return forest.fit(features)


def isolation_depth_score(forest: IsolationForest, features: np.ndarray) -> np.ndarray:
    """Raw anomaly measure in (0, 1]: higher means isolated in fewer splits."""
    if features.shape[0] == 0:
        return np.zeros(0)
    return -forest.score_samples(features)


def dump_fleet(forest: IsolationForest | None, reservoir: np.ndarray, steps: int) -> bytes:
    buffer = io.BytesIO()
    joblib.dump({"forest": forest, "reservoir": reservoir, "steps": steps}, buffer, compress=3)
    return buffer.getvalue()


def load_fleet(blob: bytes) -> tuple[IsolationForest | None, np.ndarray, int]:
    data = joblib.load(io.BytesIO(blob))
    return data["forest"], data["reservoir"], int(data["steps"])

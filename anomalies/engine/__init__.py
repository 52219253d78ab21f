"""Anomaly detection engine: pure numpy / scipy / scikit-learn, no Django.

Four method families score every point causally (statistical, learned, pattern, rules);
each is calibrated to a tail probability on its own series, their surprisals are summed,
and the sum is ranked against the series' own history (with a bonus for a value beyond
the range the series has shown) to give the score in [0, 1]. `StreamingDetector` keeps
the per-series state so that a scheduled job scores only new points; `score_series` is
the offline entry point.
"""

from __future__ import annotations

import numpy as np

from .config import COLLAPSE, FAMILIES, STALLED, DetectorConfig
from .feedback import RECURRENCE
from .rules import ThresholdRule
from .streaming import ScoreResult, StreamingDetector, is_current_state
from .tuning import Tuning

__all__ = [
    "COLLAPSE",
    "FAMILIES",
    "RECURRENCE",
    "STALLED",
    "DetectorConfig",
    "ScoreResult",
    "StreamingDetector",
    "ThresholdRule",
    "Tuning",
    "is_current_state",
    "score_many",
    "score_series",
]


def score_series(
    timestamps: np.ndarray, values: np.ndarray, config: DetectorConfig | None = None
) -> np.ndarray:
    """Anomaly score in [0, 1] for every point of one series.

    Timestamps are epoch seconds, or datetimes (numpy datetime64, pandas or Python; naive
    ones are taken as UTC), in non-decreasing order.
    """
    return score_many([timestamps], [values], config)[0]


def score_many(
    timestamps: list[np.ndarray],
    values: list[np.ndarray],
    config: DetectorConfig | None = None,
    independent: bool = False,
    tunings: list[Tuning | None] | None = None,
) -> list[np.ndarray]:
    """Score several series of different lengths in one vectorised pass.

    By default the series form one fleet and share the learned model, as the monitored
    series of one product do. With `independent`, each series learns its own, so its scores
    are exactly those it gets when scored alone (unrelated files in one offline run).
    `tunings` gives series an operator's sensitivity and direction (tuning.py).
    """
    if len(timestamps) != len(values):
        raise ValueError("timestamps and values must list the same number of series")
    lengths = [len(v) for v in values]
    for t, v in zip(timestamps, values, strict=True):
        if len(t) != len(v):
            raise ValueError("each series needs as many timestamps as values")
    width = max(lengths, default=0)
    ts = np.full((len(values), width), np.nan)
    vs = np.full((len(values), width), np.nan)
    for i, (t, v) in enumerate(zip(timestamps, values, strict=True)):
        ts[i, : len(t)] = epoch_seconds(t, series=i)
        vs[i, : len(v)] = np.asarray(v, dtype=float)
    if width == 0:
        return [np.zeros(0) for _ in values]
    fleets = np.arange(len(values)) if independent else None
    detector = StreamingDetector(len(values), config, fleets=fleets)
    if tunings is not None:
        detector.tune(tunings)
    result = detector.update(ts, vs)
    return [result.scores[i, :n].astype(float) for i, n in enumerate(lengths)]


def epoch_seconds(timestamps, series: int = 0) -> np.ndarray:
    """Timestamps as float epoch seconds, checked: finite and never going back in time.

    A datetime64[ns] array cast to float is nanoseconds, which the engine would read as
    seconds (a 5-minute series as one sampled every 9,500 years); a NaN or an unsorted
    timestamp silently shifted the alert pause onto the wrong points. Both now fail loudly.
    """
    raw = np.asarray(timestamps)
    if raw.dtype.kind == "M":
        t = raw.astype("datetime64[ns]").astype(np.int64) / 1e9
    elif raw.dtype.kind == "O":
        import pandas as pd

        try:
            stamps = pd.to_datetime(raw, utc=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"series {series}: timestamps are not datetimes ({exc})") from exc
        # Whatever resolution pandas infers (pandas 3 keeps microseconds for datetimes).
        t = np.asarray((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1))
    else:
        try:
            t = raw.astype(float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"series {series}: timestamps are not numbers ({exc})") from exc
    t = np.atleast_1d(t).astype(float)
    if not np.all(np.isfinite(t)):
        raise ValueError(
            f"series {series}: timestamp {int(np.flatnonzero(~np.isfinite(t))[0])} is not finite"
        )
    backwards = np.flatnonzero(np.diff(t) < 0)
    if backwards.size:
        raise ValueError(
            f"series {series}: timestamp {int(backwards[0]) + 1} is earlier than the one before it"
        )
    return t

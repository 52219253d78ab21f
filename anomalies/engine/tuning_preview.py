"""How often would these series have alerted under each tuning? History replayed.

Choosing "low" for a noisy queue depth is a guess until the operator sees what it would
have done: Sentry's anomaly alerts draw the anomalies of the last weeks at the chosen
sensitivity before the alert is saved, and Datadog's anomaly monitor previews its band
over history. The live detector cannot be rewound (its state holds only the present), so
the preview scores the series' stored history again from a fresh detector, once per
tuning, with `StreamingDetector` itself: the same code the scoring job runs, so a
sensitivity means here what it means there.

Every tuning is a copy of the series in one vectorised pass (a step costs about the same
for one copy or five), each copy with its own learned model, so the copies differ only
by their tuning and the medium copy's scores are those `score_series` gives.

What a replay cannot know, and the caller must say: the live detector has seen the series
since it was first scored (a replay learns from `warmup` points before the window), and
its learned model is shared with every monitored series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DetectorConfig
from .streaming import StreamingDetector
from .tuning import Tuning


@dataclass(frozen=True)
class ReplayedAlert:
    """A point at which the series would have alerted (time in epoch seconds)."""

    at: float
    score: float
    observed: float
    expected: float
    # +1 above the expected value, -1 below, 0 when the series stalled there (a stuck
    # value or missing points: no direction, so every tuning keeps it).
    direction: int


@dataclass(frozen=True)
class TuningReplay:
    tuning: Tuning
    count: int  # alerts at or after `since`
    alerts: list[ReplayedAlert]  # the newest `limit` of them, oldest first


def replay_tunings(
    series: list[tuple[np.ndarray, np.ndarray]],
    tunings: list[Tuning],
    *,
    since: float,
    config: DetectorConfig | None = None,
    limit: int = 50,
) -> list[list[TuningReplay]]:
    """Alerts from `since` on (epoch seconds) of every (timestamps, values) series under
    every tuning, learning from every point: `[series][tuning]`.

    An alert is a point whose score reaches the detector's alert level, after the alert
    pause: what opens an anomaly, or escalates one, in the scoring job. Points before
    `since` only warm the detector up.
    """
    if not tunings:
        raise ValueError("give at least one tuning to replay")
    arrays = []
    for ts, vs in series:
        ts, vs = np.asarray(ts, dtype=float), np.asarray(vs, dtype=float)
        if ts.shape != vs.shape or ts.ndim != 1:
            raise ValueError("timestamps and values must be 1-D arrays of the same length")
        arrays.append((ts, vs))
    width = max((ts.size for ts, _ in arrays), default=0)
    if width == 0:
        return [[TuningReplay(t, 0, []) for t in tunings] for _ in arrays]
    cfg = config or DetectorConfig()
    k = len(tunings)
    copies = len(arrays) * k
    # Trailing NaN timestamps are padding to the detector: shorter series end early.
    ts_block = np.full((copies, width), np.nan)
    vs_block = np.full((copies, width), np.nan)
    for s, (ts, vs) in enumerate(arrays):
        ts_block[s * k : (s + 1) * k, : ts.size] = ts
        vs_block[s * k : (s + 1) * k, : vs.size] = vs
    detector = StreamingDetector(copies, cfg, fleets=np.arange(copies))
    detector.tune(list(tunings) * len(arrays))
    result = detector.update(ts_block, vs_block)
    stalled = result.stalled >= result.vote_surprisal
    replays = []
    for s, (ts, vs) in enumerate(arrays):
        n = ts.size
        in_window = ts >= since
        row = []
        for i, tuning in enumerate(tunings):
            c = s * k + i
            scores, expected = result.scores[c, :n], result.expected[c, :n]
            at = np.flatnonzero(in_window & (scores >= cfg.alert_score))
            shown = at[-limit:] if limit > 0 else at[:0]
            alerts = [
                ReplayedAlert(
                    at=float(ts[j]),
                    score=float(scores[j]),
                    observed=float(vs[j]),
                    expected=float(expected[j]),
                    direction=0 if stalled[c, j] else int(np.sign(vs[j] - expected[j])),
                )
                for j in shown
            ]
            row.append(TuningReplay(tuning, int(at.size), alerts))
        replays.append(row)
    return replays

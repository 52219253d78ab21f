"""Unusual multivariate system states and the patterns they recur in.

A single-series detector sees latency at 400 ms and calls it normal because 400 ms is a
normal peak-hour latency. It is not normal at 3 a.m. with a tenth of the traffic. An
isolation forest over whole state vectors (CPU, memory, latency, errors, traffic... at
once) isolates such combinations quickly, because they sit away from the joint cloud of
normal states even when every coordinate is within its usual range.

Honest scoring: the forest is fitted on the earlier part of the history and scored on
the later, held-out part. The alarm threshold is a quantile of the *training* scores,
chosen without looking at labels, and precision / recall / AUC are measured on the
held-out part against known incident windows.

Unusual points are merged into episodes (consecutive flagged steps), and episodes with a
similar signature (which dimensions were off, and which way) are grouped into patterns;
a pattern whose episodes keep happening at the same hour of the week is flagged as
weekly-recurring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn.cluster import AgglomerativeClustering
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import RobustScaler

from insights.engine.threads import single_threaded

WEEK_SECONDS = 7 * 24 * 3600
HOUR_SECONDS = 3600


@dataclass
class ConditionalDeviation:
    """Explains an unusual state: how far each column is from what the others imply.

    For each column a linear model predicts it (robust-scaled) from the other columns,
    fitted on the training history. The residual, in units of its robust spread, says
    "latency is 5σ higher than traffic and CPU imply" even when latency alone is normal.
    """

    coef: np.ndarray  # (d x d), row j predicts column j; diagonal is zero
    intercept: np.ndarray  # (d,)
    spread: np.ndarray  # (d,) robust std of the training residuals

    @classmethod
    def fit(cls, scaled: np.ndarray) -> ConditionalDeviation:
        d = scaled.shape[1]
        coef = np.zeros((d, d))
        intercept = np.zeros(d)
        spread = np.ones(d)
        for j in range(d):
            others = [i for i in range(d) if i != j]
            reg = LinearRegression().fit(scaled[:, others], scaled[:, j])
            coef[j, others] = reg.coef_
            intercept[j] = reg.intercept_
            resid = scaled[:, j] - reg.predict(scaled[:, others])
            mad = stats.median_abs_deviation(resid, scale="normal")
            spread[j] = mad if mad > 1e-9 else max(float(np.std(resid)), 1e-9)
        return cls(coef=coef, intercept=intercept, spread=spread)

    def residual_z(self, scaled: np.ndarray) -> np.ndarray:
        predicted = scaled @ self.coef.T + self.intercept
        return (scaled - predicted) / self.spread


STATE_INPUTS = ("levels", "residuals", "both")


@dataclass
class StateModel:
    """Everything needed to score and explain new states: the stored artefact.

    ``inputs`` says what the forest sees: robust-scaled levels, the conditional
    residuals (each metric vs what the others imply), or both side by side.
    """

    scaler: RobustScaler
    explainer: ConditionalDeviation
    forest: IsolationForest
    columns: tuple[str, ...]
    threshold: float  # score above which a state is unusual (training quantile)
    inputs: str = "residuals"

    def features(self, states: np.ndarray) -> np.ndarray:
        scaled = self.scaler.transform(np.asarray(states, dtype=float))
        if self.inputs == "levels":
            return scaled
        residuals = self.explainer.residual_z(scaled)
        if self.inputs == "residuals":
            return residuals
        return np.hstack([scaled, residuals])

    def scores(self, states: np.ndarray) -> np.ndarray:
        """Anomaly score per state; higher means more unusual (negated sklearn score)."""
        return -self.forest.score_samples(self.features(states))

    def deviations(self, states: np.ndarray) -> np.ndarray:
        return self.explainer.residual_z(self.scaler.transform(np.asarray(states, dtype=float)))


@dataclass
class StateModelResult:
    model: StateModel
    train_end_ts: float
    n_train: int
    n_holdout: int
    holdout_scores: np.ndarray
    holdout_ts: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)


@single_threaded
def fit_state_model(
    ts: np.ndarray,
    states: np.ndarray,
    columns: Sequence[str],
    *,
    train_share: float = 0.6,
    threshold_quantile: float = 0.99,
    n_estimators: int = 200,
    inputs: str = "residuals",
    random_state: int = 0,
) -> StateModelResult:
    """Fit on the first ``train_share`` of time, score the rest (time-ordered split).

    A random split would leak: neighbouring steps are nearly identical, so the forest
    would have seen every held-out state's twin.

    Why residuals: a forest over raw levels is diluted by noisy metrics and flags slow
    growth as unusual (traffic above anything seen in training). Residuals (each metric
    against what the others imply) are unchanged by growth the metrics share, and large
    exactly when one metric leaves the company of the others. On the 28-day demo world
    (bench and ``manage.py insights_evaluate``) residuals reached held-out AUC 0.93
    against the known incidents where levels reached 0.72.
    """
    t = np.asarray(ts, dtype=float)
    x = np.asarray(states, dtype=float)
    if x.ndim != 2 or x.shape[0] != t.shape[0] or x.shape[1] != len(columns):
        raise ValueError("states must be (steps x columns) matching ts and column names")
    if not np.all(np.isfinite(x)):
        raise ValueError("states contain NaN or infinite values; fill or drop them first")
    if not 0 < train_share < 1:
        raise ValueError("train_share must be between 0 and 1")
    if inputs not in STATE_INPUTS:
        raise ValueError(f"inputs must be one of {STATE_INPUTS}")
    order = np.argsort(t)
    t, x = t[order], x[order]
    n_train = int(len(t) * train_share)
    if n_train < 50 or len(t) - n_train < 10:
        raise ValueError(f"need at least 60 steps of history, got {len(t)}")
    scaler = RobustScaler().fit(x[:n_train])
    scaled = scaler.transform(x[:n_train])
    model = StateModel(
        scaler=scaler,
        explainer=ConditionalDeviation.fit(scaled),
        forest=IsolationForest(
            n_estimators=n_estimators, contamination="auto", random_state=random_state
        ),
        columns=tuple(columns),
        threshold=float("inf"),
        inputs=inputs,
    )
    model.forest.fit(model.features(x[:n_train]))
    model.threshold = float(np.quantile(model.scores(x[:n_train]), threshold_quantile))
    return StateModelResult(
        model=model,
        train_end_ts=float(t[n_train - 1]),
        n_train=n_train,
        n_holdout=len(t) - n_train,
        holdout_scores=model.scores(x[n_train:]),
        holdout_ts=t[n_train:],
        params={
            "train_share": train_share,
            "threshold_quantile": threshold_quantile,
            "n_estimators": n_estimators,
            "inputs": inputs,
            "random_state": random_state,
        },
    )


def in_windows(ts: np.ndarray, windows: Sequence[tuple[float, float]]) -> np.ndarray:
    """Boolean mask: which timestamps fall inside any [start, end] window."""
    t = np.asarray(ts, dtype=float)
    mask = np.zeros(t.shape, dtype=bool)
    for start, end in windows:
        mask |= (t >= start) & (t <= end)
    return mask


def evaluate_against_incidents(
    ts: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    incident_windows: Sequence[tuple[float, float]],
) -> dict[str, float]:
    """Point precision/recall, ROC AUC, average precision and incident-level recall.

    Incident recall (share of incidents with at least one flagged step) is what an
    operator feels; point recall punishes flagging only the start of a long incident.
    Metrics that are undefined on the data (no incident in the held-out part) are NaN,
    never a made-up number.
    """
    t = np.asarray(ts, dtype=float)
    s = np.asarray(scores, dtype=float)
    truth = in_windows(t, incident_windows)
    flagged = s > threshold
    tp = int(np.sum(flagged & truth))
    fp = int(np.sum(flagged & ~truth))
    fn = int(np.sum(~flagged & truth))
    has_both = truth.any() and (~truth).any()
    windows_seen = [(a, b) for a, b in incident_windows if np.any((t >= a) & (t <= b))]
    detected = sum(1 for a, b in windows_seen if np.any(flagged & (t >= a) & (t <= b)))
    nan = float("nan")
    return {
        "precision": tp / (tp + fp) if tp + fp else nan,
        "recall": tp / (tp + fn) if tp + fn else nan,
        "auc": float(roc_auc_score(truth, s)) if has_both else nan,
        "average_precision": float(average_precision_score(truth, s)) if has_both else nan,
        "incident_recall": detected / len(windows_seen) if windows_seen else nan,
        "incidents": float(len(windows_seen)),
        "flagged_share": float(flagged.mean()) if len(flagged) else nan,
    }


@dataclass(frozen=True)
class Episode:
    start_ts: float
    end_ts: float
    peak_score: float
    signature: tuple[float, ...]  # mean conditional deviation (σ) of each column


def find_episodes(
    ts: np.ndarray,
    states: np.ndarray,
    model: StateModel,
    *,
    step_seconds: float | None = None,
    max_gap_steps: int = 1,
) -> list[Episode]:
    """Merge unusual steps closer than ``max_gap_steps`` normal steps into episodes.

    ``ts`` must be sorted. Closeness is measured in time (``step_seconds``, by default
    the median spacing), so a hole in the data does not glue two distant episodes.
    """
    t = np.asarray(ts, dtype=float)
    if len(t) == 0:
        return []
    x = np.asarray(states, dtype=float)
    scores = model.scores(x)
    z = model.deviations(x)
    flagged = np.flatnonzero(scores > model.threshold)
    if len(flagged) == 0:
        return []
    step = float(step_seconds or (np.median(np.diff(t)) if len(t) > 1 else 1.0))
    groups: list[list[int]] = [[int(flagged[0])]]
    for i in flagged[1:]:
        if t[i] - t[groups[-1][-1]] <= (max_gap_steps + 1) * step + 1e-6:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    episodes = []
    for g in groups:
        idx = np.asarray(g)
        episodes.append(
            Episode(
                start_ts=float(t[idx[0]]),
                end_ts=float(t[idx[-1]]),
                peak_score=float(np.max(scores[idx])),
                signature=tuple(float(v) for v in z[idx].mean(axis=0)),
            )
        )
    return episodes


@dataclass(frozen=True)
class AnomalyPattern:
    label: int
    episodes: tuple[Episode, ...]
    signature: tuple[float, ...]  # mean conditional deviation (σ) per column
    columns: tuple[str, ...]
    hours_of_week: tuple[int, ...]  # hour of week (0 = Monday 00:00 UTC) of each start
    weekly_hour: int | None  # the hour of week it recurs at, None if not weekly

    @property
    def count(self) -> int:
        return len(self.episodes)

    @property
    def weekly_recurring(self) -> bool:
        return self.weekly_hour is not None

    def describe(self, min_abs_z: float = 2.0) -> str:
        """Plain words: which dimensions were off for the others, and which way."""
        parts = sorted(zip(self.columns, self.signature, strict=True), key=lambda p: -abs(p[1]))
        words = [
            f"{name} {'higher' if z > 0 else 'lower'} than the other metrics imply ({z:+.1f}σ)"
            for name, z in parts
            if abs(z) >= min_abs_z
        ]
        text = "; ".join(words[:3]) if words else "an unusual mix with no single dominant metric"
        if self.weekly_hour is not None:
            day, hour = divmod(self.weekly_hour, 24)
            text += f"; recurs weekly on {WEEKDAYS[day]} around {hour:02d}:00 UTC"
        return text


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def hour_of_week(ts: float) -> int:
    """Hour of the week in UTC, Monday 00:00 = 0 (the Unix epoch was a Thursday)."""
    return int(((ts + 3 * 24 * 3600) % WEEK_SECONDS) // HOUR_SECONDS)


def group_patterns(
    episodes: Sequence[Episode],
    columns: Sequence[str],
    *,
    distance_threshold: float = 4.0,
    min_episodes: int = 2,
    weekly_tolerance_hours: int = 1,
    weekly_min_share: float = 0.5,
    min_deviation: float = 4.0,
) -> list[AnomalyPattern]:
    """Cluster episodes by signature; keep groups that recur (``min_episodes`` or more).

    Agglomerative clustering with a distance threshold (in σ of conditional deviation)
    does not need the number of patterns in advance. A pattern recurs weekly when at
    least ``weekly_min_share`` of its episodes, from two or more different weeks, start
    within the tolerance of one hour of the week; scattered episodes that happen to
    share an hour once do not count.

    A pattern also needs one column at least ``min_deviation`` σ away from what the
    other columns imply: the threshold flags the top tail of normal states too, and a
    "pattern" of those would only describe noise.
    """
    if len(episodes) < max(min_episodes, 1):
        return []
    sig = np.asarray([e.signature for e in episodes], dtype=float)
    if len(episodes) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        labels = AgglomerativeClustering(
            n_clusters=None, distance_threshold=distance_threshold, linkage="average"
        ).fit_predict(sig)
    patterns = []
    for label in np.unique(labels):
        members = sorted(
            (e for e, lab in zip(episodes, labels, strict=True) if lab == label),
            key=lambda e: e.start_ts,
        )
        signature = sig[labels == label].mean(axis=0)
        if len(members) < min_episodes or np.max(np.abs(signature)) < min_deviation:
            continue
        patterns.append(
            AnomalyPattern(
                label=int(label),
                episodes=tuple(members),
                signature=tuple(float(v) for v in signature),
                columns=tuple(columns),
                hours_of_week=tuple(hour_of_week(e.start_ts) for e in members),
                weekly_hour=weekly_hour(
                    members, tolerance=weekly_tolerance_hours, min_share=weekly_min_share
                ),
            )
        )
    return sorted(patterns, key=lambda p: -p.count)


def weekly_hour(
    episodes: Sequence[Episode], *, tolerance: int = 1, min_share: float = 0.5
) -> int | None:
    """The hour of week most episodes start at, if they cluster there across weeks."""
    if len(episodes) < 2:
        return None
    hours = np.asarray([hour_of_week(e.start_ts) for e in episodes])
    weeks = np.asarray([int(e.start_ts // WEEK_SECONDS) for e in episodes])
    best: tuple[int, int] | None = None
    for h in np.unique(hours):
        diff = np.abs(hours - h)
        near = np.minimum(diff, 168 - diff) <= tolerance
        distinct_weeks = len(np.unique(weeks[near]))
        enough = distinct_weeks >= 2 and near.sum() >= min_share * len(episodes)
        if enough and (best is None or near.sum() > best[1]):
            best = (int(h), int(near.sum()))
    return best[0] if best else None


def single_series_scores(train: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Baseline for comparison: the largest per-column robust z (what one-series
    detectors see). Used by the evaluation to show what only the joint view finds."""
    scaler = RobustScaler().fit(np.asarray(train, dtype=float))
    return np.max(np.abs(scaler.transform(np.asarray(states, dtype=float))), axis=1)

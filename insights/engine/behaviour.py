"""Turning raw end-user events into the matrices the models read (pure numpy).

Input is the column frame ``telemetry.selectors.events_frame`` returns (user_id, name,
ts, properties as arrays); outputs are per-user matrices. Kept apart from the services
so the aggregation rules (what counts as a session, when a user counts as retained) are
tested on hand-made events without a database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DAY = 86400.0

# Behavioural features for segmentation: (feature name, event names counted).
COUNTED_EVENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sessions", ("session_start",)),
    ("page_views", ("page_view",)),
    ("shortcuts", ("shortcut_used",)),
    ("tasks", ("task_completed",)),
    ("goals", ("goal_completed",)),
    ("streak_days", ("streak_day",)),
    ("social", ("share", "comment")),
    ("invites", ("invite",)),
    ("purchases", ("purchase",)),
)
BEHAVIOUR_FEATURES = (
    *(name for name, _ in COUNTED_EVENTS),
    "feature_breadth",
    "active_days",
)
FEATURE_EVENTS = ("page_view", "feature_use")


def _feature_of(properties: object) -> str | None:
    if isinstance(properties, Mapping):
        value = properties.get("feature")
        return str(value) if value else None
    return None


@dataclass
class BehaviourMatrix:
    user_ids: np.ndarray  # (users,) object
    features: np.ndarray  # (users x BEHAVIOUR_FEATURES) counts
    feature_names: tuple[str, ...]


def behaviour_matrix(
    frame: Mapping[str, np.ndarray], *, window_days: float | None = None
) -> BehaviourMatrix:
    """Per-user counts of behaviours, distinct features touched and distinct active days.

    With ``window_days``, counts become weekly rates (count / weeks in the window), so a
    model trained on a four-week window assigns users seen over one week consistently.
    """
    users = np.asarray(frame["user_id"], dtype=object)
    names = np.asarray(frame["name"], dtype=object)
    ts = np.asarray(frame["ts"], dtype=float)
    uniq, idx = np.unique(users.astype(str), return_inverse=True)
    n = len(uniq)
    out = np.zeros((n, len(BEHAVIOUR_FEATURES)))
    for j, (_, events) in enumerate(COUNTED_EVENTS):
        mask = np.isin(names, events)
        out[:, j] = np.bincount(idx[mask], minlength=n)
    breadth_col = BEHAVIOUR_FEATURES.index("feature_breadth")
    props = frame.get("properties")
    if props is not None and n:
        touched: list[set[str]] = [set() for _ in range(n)]
        for i in np.flatnonzero(np.isin(names, FEATURE_EVENTS)):
            feature = _feature_of(props[i])
            if feature:
                touched[idx[i]].add(feature)
        out[:, breadth_col] = [len(s) for s in touched]
    if n:
        day = np.floor(ts / DAY).astype(np.int64)
        pairs = np.unique(np.column_stack([idx, day]), axis=0)
        out[:, BEHAVIOUR_FEATURES.index("active_days")] = np.bincount(pairs[:, 0], minlength=n)
    if window_days is not None:
        if window_days <= 0:
            raise ValueError("window_days must be positive")
        out /= window_days / 7.0
    return BehaviourMatrix(uniq.astype(object), out, BEHAVIOUR_FEATURES)


@dataclass
class Cohort:
    """Users old enough to judge, their early feature use, and what became of them."""

    user_ids: np.ndarray
    usage: np.ndarray  # (users x features) uses during the first ``observe_days``
    feature_names: tuple[str, ...]
    retained: np.ndarray  # came back after the observation window, within the horizon
    converted: np.ndarray  # purchased within the horizon
    observe_days: float
    horizon_days: float

    def outcome(self, name: str) -> np.ndarray:
        if name == "retention":
            return self.retained
        if name == "conversion":
            return self.converted
        raise ValueError(f"unknown outcome {name!r}; expected retention or conversion")


OUTCOMES = ("retention", "conversion")


def feature_cohort(
    frame: Mapping[str, np.ndarray],
    *,
    end_ts: float,
    observe_days: float = 2.0,
    horizon_days: float = 5.0,
    features: Sequence[str] | None = None,
    first_seen: Mapping[str, float] | None = None,
    start_ts: float | None = None,
) -> Cohort:
    """Early feature use of each user and whether they were retained / converted.

    Why windows: usage is counted only in each user's first ``observe_days`` and
    retention is a return *after* that, so a feature is not credited for use that
    happened because the user was retained anyway. Users first seen less than
    ``horizon_days`` before ``end_ts`` are left out: their outcome is not known yet.

    ``first_seen`` (user -> epoch seconds of their first event ever, from all history)
    anchors those windows; without it a user's first event in ``frame`` does. With
    ``start_ts`` (the start of the frame's window) users first seen before it are left
    out: a long-standing user's first event inside the window is not their first
    days, and counting them as newcomers credited features with veterans' loyalty.
    """
    if not 0 < observe_days < horizon_days:
        raise ValueError("observe_days must be positive and shorter than horizon_days")
    users = np.asarray(frame["user_id"], dtype=object).astype(str)
    names = np.asarray(frame["name"], dtype=object)
    ts = np.asarray(frame["ts"], dtype=float)
    props = frame.get("properties")
    uniq, idx = np.unique(users, return_inverse=True)
    first = np.full(len(uniq), np.inf)
    if len(ts):
        np.minimum.at(first, idx, ts)
    if first_seen:
        known = np.array([first_seen.get(u, np.inf) for u in uniq], dtype=float)
        first = np.minimum(first, known)
    eligible = first + horizon_days * DAY <= end_ts
    if start_ts is not None:
        eligible &= first >= start_ts
    rel = ts - first[idx] if len(ts) else ts
    in_obs = (rel >= 0) & (rel < observe_days * DAY)
    in_horizon = rel <= horizon_days * DAY

    feature_of_event = np.array(
        [
            _feature_of(props[i]) if props is not None and names[i] in FEATURE_EVENTS else None
            for i in range(len(ts))
        ],
        dtype=object,
    )
    if features is None:
        features = sorted({f for f in feature_of_event if f})
    col = {f: j for j, f in enumerate(features)}
    usage = np.zeros((len(uniq), len(features)))
    for i in np.flatnonzero(in_obs):
        j = col.get(feature_of_event[i])
        if j is not None:
            usage[idx[i], j] += 1

    came_back = (names == "session_start") & ~in_obs & in_horizon & (rel > 0)
    retained = np.bincount(idx[came_back], minlength=len(uniq)) > 0
    bought = (names == "purchase") & in_horizon
    converted = np.bincount(idx[bought], minlength=len(uniq)) > 0
    keep = np.flatnonzero(eligible)
    return Cohort(
        user_ids=uniq[keep].astype(object),
        usage=usage[keep],
        feature_names=tuple(features),
        retained=retained[keep].astype(int),
        converted=converted[keep].astype(int),
        observe_days=observe_days,
        horizon_days=horizon_days,
    )


def align_states(
    columns: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Join resampled series on their common timestamps: (ts, states, column names).

    Only steps where every column has a value are kept; an isolation forest has no
    notion of a missing coordinate, and inventing one would create fake unusual states.
    """
    names = tuple(columns)
    if not names:
        return np.empty(0), np.empty((0, 0)), names
    common: np.ndarray | None = None
    for ts, _ in columns.values():
        common = np.asarray(ts) if common is None else np.intersect1d(common, ts)
    assert common is not None
    states = np.empty((len(common), len(names)))
    for j, name in enumerate(names):
        ts, values = columns[name]
        pos = np.searchsorted(ts, common)
        states[:, j] = np.asarray(values)[pos]
    finite = np.all(np.isfinite(states), axis=1)
    return common[finite].astype(float), states[finite], names

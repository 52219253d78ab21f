"""Behavioural features per end user, computed from raw event arrays.

The persona model must compare users on *how* they use the product, not on how
much: a heavy Explorer and a light Explorer should land in the same persona. So
most features here are rates (per session, per action) or shares, and the few
volume features (sessions, active days, recency) are kept for profiles and for
the "too little data" gate, not for the persona model (see
``personas.PERSONA_FEATURES``).

Input is the column layout that ``telemetry.selectors`` returns (parallel numpy
arrays) plus a ``properties`` column of dicts, so this module runs on any data
set without Django.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DAY_SECONDS = 86_400.0

FEATURE_EVENTS = frozenset({"page_view", "feature_use"})
ACTION_EVENTS = frozenset({"page_view", "feature_use", "shortcut_used"})
SOCIAL_EVENTS = frozenset({"share", "comment", "invite"})

FEATURE_NAMES: tuple[str, ...] = (
    "sessions",
    "active_days",
    "events_per_session",
    "feature_breadth",
    "discovery_rate",
    "effective_features",
    "revisit_share",
    "shortcut_rate",
    "tasks_per_session",
    "median_task_seconds",
    "goals_per_session",
    "longest_streak_days",
    "social_per_session",
    "recency_days",
    "event_count",
)
"""Columns of :class:`UserFeatures.matrix`, documented in docs/personalization.md.

- sessions: distinct session ids.
- active_days: distinct UTC days with any event.
- events_per_session: all events / sessions (engagement depth).
- feature_breadth: distinct features touched (``page_view``/``feature_use`` ``feature``).
- discovery_rate: distinct features / feature events: the share of feature visits that
  were a first visit (Explorers discover, Optimizers repeat). Falls with volume.
- effective_features: exp(Shannon entropy) of the feature-visit distribution, the number
  of equally used features that would give the same spread; unlike breadth and
  discovery it barely moves with volume, so it separates Explorers from light users.
- revisit_share: share of feature events on a feature already used in an *earlier*
  session (repeated flows).
- shortcut_rate: ``shortcut_used`` / (page views + feature uses + shortcuts).
- tasks_per_session: ``task_completed`` per session.
- median_task_seconds: median ``duration_s`` of completed tasks (NaN without tasks).
- goals_per_session: ``goal_completed`` per session.
- longest_streak_days: longest run of consecutive UTC days with a ``streak_day`` or
  ``goal_completed`` event.
- social_per_session: ``share`` + ``comment`` + ``invite`` per session.
- recency_days: days between the user's last event and ``as_of``.
- event_count: all events.
"""


@dataclass(frozen=True)
class EventArrays:
    """Events as parallel columns, one row per event."""

    user_id: np.ndarray
    name: np.ndarray
    ts: np.ndarray  # float epoch seconds
    session_id: np.ndarray
    properties: Sequence[Mapping | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.user_id)
        lengths = {len(self.name), len(self.ts), len(self.session_id)}
        if self.properties:
            lengths.add(len(self.properties))
        if lengths != {n}:
            raise ValueError("event columns must all have the same length")

    def __len__(self) -> int:
        return len(self.user_id)


@dataclass(frozen=True)
class UserFeatures:
    """One row per user, columns in :data:`FEATURE_NAMES`."""

    user_ids: np.ndarray
    matrix: np.ndarray
    names: tuple[str, ...] = FEATURE_NAMES

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, self.names.index(name)]

    def row(self, user_id: str) -> dict[str, float]:
        idx = int(np.flatnonzero(self.user_ids == user_id)[0])
        return {n: float(v) for n, v in zip(self.names, self.matrix[idx], strict=True)}


def _longest_run(days: np.ndarray) -> int:
    """Longest run of consecutive integers in a sorted array of unique day numbers."""
    if days.size == 0:
        return 0
    breaks = np.flatnonzero(np.diff(days) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [days.size - 1]))
    return int((ends - starts + 1).max())


def _effective_count(counts: np.ndarray) -> float:
    """exp(entropy) of a count vector: 0 for no visits, k for k equally used features."""
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts / total
    return float(np.exp(-(p * np.log(p)).sum()))


def _user_features(
    names: np.ndarray,
    ts: np.ndarray,
    sessions: np.ndarray,
    props: Sequence[Mapping | None],
    as_of: float,
) -> list[float]:
    order = np.argsort(ts, kind="stable")
    names, ts, sessions = names[order], ts[order], sessions[order]
    props = [props[i] for i in order] if len(props) else [None] * len(order)

    n_events = len(names)
    unique_sessions = np.unique(sessions)
    n_sessions = max(len(unique_sessions), 1)
    days = np.unique(np.floor(ts / DAY_SECONDS).astype(np.int64))

    seen_before_session: set[str] = set()
    current_session_features: set[str] = set()
    current_session = None
    feature_events = 0
    revisits = 0
    distinct: dict[str, int] = {}
    durations: list[float] = []
    streak_days: set[int] = set()
    counts: dict[str, int] = {}
    for name, t, session, prop in zip(names, ts, sessions, props, strict=True):
        counts[name] = counts.get(name, 0) + 1
        if session != current_session:
            seen_before_session |= current_session_features
            current_session_features = set()
            current_session = session
        prop = prop or {}
        if name in FEATURE_EVENTS and prop.get("feature"):
            feature = str(prop["feature"])
            feature_events += 1
            distinct[feature] = distinct.get(feature, 0) + 1
            if feature in seen_before_session:
                revisits += 1
            current_session_features.add(feature)
        elif name == "task_completed":
            duration = prop.get("duration_s")
            if isinstance(duration, int | float) and duration >= 0:
                durations.append(float(duration))
        if name in ("streak_day", "goal_completed"):
            streak_days.add(int(t // DAY_SECONDS))

    actions = sum(counts.get(n, 0) for n in ACTION_EVENTS)
    social = sum(counts.get(n, 0) for n in SOCIAL_EVENTS)
    return [
        float(len(unique_sessions)),
        float(len(days)),
        n_events / n_sessions,
        float(len(distinct)),
        len(distinct) / feature_events if feature_events else 0.0,
        _effective_count(np.fromiter(distinct.values(), dtype=np.float64)),
        revisits / feature_events if feature_events else 0.0,
        counts.get("shortcut_used", 0) / actions if actions else 0.0,
        counts.get("task_completed", 0) / n_sessions,
        float(np.median(durations)) if durations else float("nan"),
        counts.get("goal_completed", 0) / n_sessions,
        float(_longest_run(np.array(sorted(streak_days), dtype=np.int64))),
        social / n_sessions,
        max(as_of - float(ts[-1]), 0.0) / DAY_SECONDS if n_events else float("nan"),
        float(n_events),
    ]


def extract_user_features(events: EventArrays, *, as_of: float | None = None) -> UserFeatures:
    """Compute :data:`FEATURE_NAMES` for every user present in ``events``.

    ``as_of`` (epoch seconds) anchors recency; by default the last event in the data,
    so that replaying an old window gives the same answer as it did at the time.
    """
    if len(events) == 0:
        return UserFeatures(np.array([], dtype=object), np.empty((0, len(FEATURE_NAMES))))
    user_ids = np.asarray(events.user_id).astype(str)
    ts = np.asarray(events.ts, dtype=np.float64)
    names = np.asarray(events.name).astype(str)
    sessions = np.asarray(events.session_id).astype(str)
    anchor = float(ts.max()) if as_of is None else float(as_of)

    order = np.argsort(user_ids, kind="stable")
    sorted_users = user_ids[order]
    uniques, starts = np.unique(sorted_users, return_index=True)
    bounds = np.append(starts, len(order))
    rows = []
    for i in range(len(uniques)):
        idx = order[bounds[i] : bounds[i + 1]]
        props = [events.properties[j] for j in idx] if len(events.properties) else []
        rows.append(_user_features(names[idx], ts[idx], sessions[idx], props, anchor))
    return UserFeatures(uniques.astype(object), np.asarray(rows, dtype=np.float64))

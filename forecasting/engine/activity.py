"""User-behaviour metrics derived from raw events, bucket by bucket.

User growth and engagement are not stored as metric series: they are
counted from the events (who did something, who signed up, how many
sessions) so that they mean the same thing whatever the product logs.
Counting happens here, on numpy arrays, so it is tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecasting.engine.calendar import DAY

#: the event that marks a new user; users first seen without it are not counted as new
SIGNUP_EVENT = "signup_completed"


@dataclass(frozen=True)
class ActivitySeries:
    """Per-bucket metrics over consecutive buckets of ``step`` seconds (start times)."""

    timestamps: np.ndarray
    active_users: np.ndarray
    new_users: np.ndarray
    events_per_user: np.ndarray
    sessions_per_user: np.ndarray

    def metric(self, name: str) -> np.ndarray:
        if name not in METRICS:
            raise ValueError(f"unknown activity metric {name!r}; known: {', '.join(METRICS)}")
        return getattr(self, name)


METRICS = ("active_users", "new_users", "events_per_user", "sessions_per_user")


def _distinct_per_bucket(bucket: np.ndarray, keys: np.ndarray, n: int) -> np.ndarray:
    if bucket.size == 0:
        return np.zeros(n)
    _, codes = np.unique(keys, return_inverse=True)
    pairs = np.unique(np.stack([bucket, codes.astype(np.int64)]), axis=1)
    return np.bincount(pairs[0], minlength=n).astype(float)


def activity_series(
    timestamps: np.ndarray,
    user_ids: np.ndarray,
    session_ids: np.ndarray,
    names: np.ndarray,
    *,
    step: float = DAY,
    start: float | None = None,
    end: float | None = None,
) -> ActivitySeries:
    """Active users, new users, events and sessions per active user for each bucket.

    Buckets are aligned on the epoch (calendar days for ``step=DAY``) and run
    from ``start`` to ``end`` (default: the first and last event), so a
    bucket with no events is a real zero, not a missing value. Only whole
    buckets are returned: a partial last day would look like a sudden drop.
    """
    ts = np.asarray(timestamps, dtype=float)
    users = np.asarray(user_ids).astype(str)
    sessions = np.asarray(session_ids).astype(str)
    kinds = np.asarray(names).astype(str)
    if ts.size == 0 and (start is None or end is None):
        empty = np.empty(0)
        return ActivitySeries(empty, empty, empty, empty, empty)
    first = np.floor((ts.min() if start is None else start) / step)
    last_edge = np.floor((ts.max() if end is None else end) / step)  # bucket that may be partial
    n = max(int(last_edge - first), 0)
    bucket = (np.floor(ts / step) - first).astype(np.int64)
    inside = (bucket >= 0) & (bucket < n)
    bucket, users, sessions, kinds = bucket[inside], users[inside], sessions[inside], kinds[inside]
    active = _distinct_per_bucket(bucket, users, n)
    events = np.bincount(bucket, minlength=n).astype(float)
    with_session = sessions != ""
    session_keys = np.char.add(np.char.add(users[with_session], "\x1f"), sessions[with_session])
    session_count = _distinct_per_bucket(bucket[with_session], session_keys, n)
    signup = kinds == SIGNUP_EVENT
    new = _distinct_per_bucket(bucket[signup], users[signup], n)
    per_user = np.divide(events, active, out=np.zeros(n), where=active > 0)
    sessions_per = np.divide(session_count, active, out=np.zeros(n), where=active > 0)
    return ActivitySeries(
        timestamps=(first + np.arange(n)) * step,
        active_users=active,
        new_users=new,
        events_per_user=per_user,
        sessions_per_user=sessions_per,
    )

"""Synthetic end users of known kind, for tests and the offline evaluation.

Each kind follows the behavioural definition of its persona (see
``personas.PERSONA_DEFINITIONS``) but with heavy per-user noise and with every
behaviour present at a low rate in every kind, so that the classes overlap the
way real users do and accuracy / calibration are informative rather than 100%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import DAY_SECONDS, EventArrays

KINDS: tuple[str, ...] = ("explorer", "optimizer", "achiever", "socializer")
N_FEATURES = 20


@dataclass(frozen=True)
class KindProfile:
    """Average behaviour of one kind; users draw their own rates around it."""

    active_day_prob: float
    feature_events_per_session: float
    feature_concentration: float  # Dirichlet alpha: small = few favourite features
    shortcuts_per_session: float
    tasks_per_session: float
    median_task_seconds: float
    goals_per_session: float
    streak_prob: float  # chance an active day carries a streak_day event
    social_per_session: float


KIND_PROFILES: dict[str, KindProfile] = {
    "explorer": KindProfile(0.45, 9.0, 5.0, 0.3, 1.0, 150.0, 0.15, 0.05, 0.3),
    "optimizer": KindProfile(0.6, 7.0, 0.15, 3.5, 2.5, 45.0, 0.2, 0.05, 0.2),
    "achiever": KindProfile(0.8, 5.0, 0.6, 0.5, 1.8, 120.0, 1.5, 0.85, 0.3),
    "socializer": KindProfile(0.5, 5.0, 0.6, 0.3, 0.8, 140.0, 0.15, 0.05, 3.0),
    "casual": KindProfile(0.05, 3.0, 1.0, 0.2, 0.5, 130.0, 0.1, 0.0, 0.2),
}


@dataclass(frozen=True)
class SimulatedUsers:
    events: EventArrays
    kinds: dict[str, str]  # user_id -> kind


def simulate_users(
    n_per_kind: int,
    *,
    days: int = 28,
    n_casual: int = 0,
    noise: float = 0.45,
    seed: int = 0,
    start_ts: float = 1_767_225_600.0,  # 2026-01-01
) -> SimulatedUsers:
    """Generate ``n_per_kind`` users of each kind plus ``n_casual`` near-inactive users.

    ``noise`` is the log-normal sigma of each user's personal multiplier on every
    rate: 0 gives textbook users, 0.45 gives realistic overlap between kinds.
    """
    rng = np.random.default_rng(seed)
    users = [(k, i) for k in KINDS for i in range(n_per_kind)]
    users += [("casual", i) for i in range(n_casual)]
    cols: dict[str, list] = {"user_id": [], "name": [], "ts": [], "session_id": [], "props": []}
    kinds: dict[str, str] = {}

    def emit(uid: str, name: str, t: float, sid: str, props: dict | None = None) -> None:
        cols["user_id"].append(uid)
        cols["name"].append(name)
        cols["ts"].append(t)
        cols["session_id"].append(sid)
        cols["props"].append(props or {})

    for kind, i in users:
        uid = f"{kind[:3]}-{seed}-{i}"
        kinds[uid] = kind
        base = KIND_PROFILES[kind]

        def jitter(x: float) -> float:
            return float(x * rng.lognormal(0.0, noise))

        p_active = min(jitter(base.active_day_prob), 0.98)
        feat_rate = jitter(base.feature_events_per_session)
        prefs = rng.dirichlet(np.full(N_FEATURES, jitter(base.feature_concentration)))
        shortcut_rate = jitter(base.shortcuts_per_session)
        task_rate = jitter(base.tasks_per_session)
        task_median = jitter(base.median_task_seconds)
        goal_rate = jitter(base.goals_per_session)
        streak_prob = min(jitter(base.streak_prob), 1.0)
        social_rate = jitter(base.social_per_session)
        active_days = np.flatnonzero(rng.random(days) < p_active)
        if kind == "casual":
            active_days = active_days[:1] if active_days.size else np.array([0])
        for day in active_days:
            for s in range(1 if kind == "casual" else 1 + rng.poisson(0.3)):
                sid = f"{uid}-{day}-{s}"
                t = start_ts + day * DAY_SECONDS + rng.uniform(6, 20) * 3600 + s * 1800
                emit(uid, "session_start", t, sid)
                n_feat = rng.poisson(feat_rate)
                for f in rng.choice(N_FEATURES, size=n_feat, p=prefs):
                    t += rng.exponential(40)
                    name = "feature_use" if rng.random() < 0.5 else "page_view"
                    emit(uid, name, t, sid, {"feature": f"feature_{f}"})
                for _ in range(rng.poisson(shortcut_rate)):
                    t += rng.exponential(10)
                    emit(uid, "shortcut_used", t, sid, {"shortcut": f"k{rng.integers(8)}"})
                for _ in range(rng.poisson(task_rate)):
                    duration = task_median * rng.lognormal(0.0, 0.4)
                    t += duration
                    emit(uid, "task_completed", t, sid, {"duration_s": round(duration, 1)})
                for _ in range(rng.poisson(goal_rate)):
                    emit(uid, "goal_completed", t, sid, {"goal": f"g{rng.integers(5)}"})
                if s == 0 and rng.random() < streak_prob:
                    emit(uid, "streak_day", t, sid)
                for _ in range(rng.poisson(social_rate)):
                    t += rng.exponential(30)
                    emit(uid, str(rng.choice(["share", "comment", "invite"])), t, sid)

    events = EventArrays(
        user_id=np.array(cols["user_id"], dtype=object),
        name=np.array(cols["name"], dtype=object),
        ts=np.array(cols["ts"], dtype=np.float64),
        session_id=np.array(cols["session_id"], dtype=object),
        properties=cols["props"],
    )
    return SimulatedUsers(events=events, kinds=kinds)

"""A realistic, reproducible synthetic product, as pure numpy (no Django).

Traffic drives everything else, as it does in a real product: request rate has daily
and weekly seasonality and growth; CPU, memory, DB connections, API quota, queue
backlog, latency and errors follow it with noise. Incidents are injected with a known
cause that precedes its effects, so tests can check what the systems find. End users
of four behavioural kinds produce events; each user mixes in some random behaviour so
that kinds are learnable but not trivially separable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ENDPOINTS = {  # share of traffic, p50 latency ms, DB queries per request
    "/api/search": (0.35, 80.0, 4.0),
    "/api/feed": (0.30, 60.0, 6.0),
    "/api/profile": (0.15, 35.0, 3.0),
    "/api/checkout": (0.12, 150.0, 8.0),
    "/api/reports": (0.08, 420.0, 46.0),  # an N+1 pattern: one query per report row
}
FEATURES = [
    "search",
    "feed",
    "profile",
    "checkout",
    "reports",
    "dashboards",
    "templates",
    "collections",
    "export",
    "import",
    "calendar",
    "notifications",
    "settings",
    "billing",
    "integrations",
    "automation",
    "analytics",
    "tags",
    "comments",
    "teams",
]
SHORTCUTS = ["cmd_k", "quick_add", "bulk_edit", "keyboard_nav", "saved_filter"]
GOALS = ["profile_complete", "first_report", "weekly_target", "level_up", "badge"]
KINDS = ["explorer", "optimizer", "achiever", "socializer"]
KIND_SHARES = [0.25, 0.25, 0.22, 0.20]  # the rest are casual users with too little data
MAX_DB_CONNECTIONS = 100.0


@dataclass
class SeriesData:
    name: str
    labels: dict
    unit: str
    values: np.ndarray
    description: str = ""
    importance: float = 1.0


@dataclass
class Incident:
    name: str
    kind: str
    cause: tuple[str, dict]
    effects: list[tuple[str, dict]]
    start: float
    end: float
    description: str
    # The change that set it off, recorded as a change event: (kind, title, labels, seconds
    # before `start`). A deploy is what an on-call asks about first.
    change: tuple[str, str, dict, float] | None = None


@dataclass
class DemoEvents:
    user_id: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    session_id: list[str] = field(default_factory=list)
    properties: list[dict] = field(default_factory=list)


@dataclass
class World:
    ts: np.ndarray  # epoch seconds of the sample grid
    series: list[SeriesData]
    incidents: list[Incident]
    events: DemoEvents
    user_kinds: dict[str, str]


def _smooth_noise(rng: np.random.Generator, n: int, scale: float, span: int = 12) -> np.ndarray:
    """Autocorrelated noise: real metrics wander, they don't jump independently every step."""
    raw = rng.normal(0.0, 1.0, n + span)
    kernel = np.ones(span) / np.sqrt(span)
    return np.convolve(raw, kernel, mode="valid")[:n] * scale


def _bump(ts: np.ndarray, start: float, ramp: float, hold: float, height: float) -> np.ndarray:
    """A trapezoid: ramp up, hold, ramp down, as incidents look in practice."""
    up = np.clip((ts - start) / ramp, 0.0, 1.0)
    down = np.clip((start + ramp + hold + ramp - ts) / ramp, 0.0, 1.0)
    return height * np.minimum(up, down)


GROWTH_PER_DAY = 0.25 / 60  # a quarter more traffic every two months


def build_metrics(
    ts: np.ndarray,
    rng: np.random.Generator,
    step: float,
    *,
    origin: float | None = None,
    with_incidents: bool = True,
) -> tuple[list[SeriesData], list[Incident]]:
    """Metrics on the grid ``ts``; ``origin`` anchors growth so a later extension continues it."""
    n = ts.size
    origin = float(ts[0]) if origin is None else origin
    days = (ts - origin) / 86400.0
    hour = (ts % 86400.0) / 3600.0
    dow = ((ts // 86400.0) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    daily = 0.55 + 0.45 * np.exp(-((hour - 14.0) ** 2) / (2 * 4.0**2))
    weekly = np.where(dow >= 5, 0.72, 1.0)
    growth = 1.0 + GROWTH_PER_DAY * days
    noise = np.exp(_smooth_noise(rng, n, 0.03) + rng.normal(0, 0.02, n))
    rate = 1200.0 * daily * weekly * growth * noise  # requests per minute
    load = rate / (1200.0 * 1.25)  # share of a fixed peak, so any window is on one scale

    span = ts[-1] - ts[0]
    incidents = _plan_incidents(ts, span, step) if with_incidents else []
    by_name = {i.name: i for i in incidents}

    def bump(name: str, lag: float = 0.0, height: float = 1.0, tail: float = 0.0) -> np.ndarray:
        inc = by_name.get(name)
        if inc is None:
            return np.zeros(n)
        ramp = 2 * step
        hold = inc.end - inc.start - 2 * ramp
        return _bump(ts, inc.start + lag, ramp, hold + tail, height)

    db_spike = bump("db-connection-exhaustion")
    db_effect = bump("db-connection-exhaustion", lag=2 * step)
    cpu_spike = bump("cpu-saturation")
    cpu_effect = bump("cpu-saturation", lag=step)
    err_spike = bump("checkout-error-burst")
    queue_spike = bump("queue-backlog")

    cpu = np.clip(0.12 + 0.55 * load + _smooth_noise(rng, n, 0.012) + 0.4 * cpu_spike, 0.02, 1.0)
    memory = np.clip(
        0.42 + 0.12 * load + 0.04 * ((days % 7) / 7) + _smooth_noise(rng, n, 0.006), 0.05, 0.99
    )
    db_active = np.clip(
        8.0 + 42.0 * load + _smooth_noise(rng, n, 1.2) + 48.0 * db_spike, 1.0, MAX_DB_CONNECTIONS
    )
    api_quota = np.clip(0.08 + 0.62 * load + _smooth_noise(rng, n, 0.01), 0.0, 1.0)
    backlog = rng.poisson(3.0 + 35.0 * load**3) + np.round(400.0 * queue_spike)
    slowdown = 1.0 + 2.5 * db_effect + 1.8 * cpu_effect + 0.6 * np.clip(cpu - 0.75, 0, None)

    out: list[SeriesData] = []
    total_err = np.zeros(n)
    weighted_p95 = np.zeros(n)
    for endpoint, (share, p50_base, queries) in ENDPOINTS.items():
        labels = {"endpoint": endpoint}
        ep_rate = rate * share * np.exp(rng.normal(0, 0.04, n))
        p50 = p50_base * slowdown * np.exp(_smooth_noise(rng, n, 0.02) + rng.normal(0, 0.03, n))
        p95 = p50 * (2.6 + 0.3 * rng.random(n))
        err = np.clip(0.002 + rng.normal(0, 0.0008, n) + 0.01 * db_effect, 0.0, 1.0)
        if endpoint == "/api/checkout":
            err = np.clip(err + 0.09 * err_spike, 0, 1)
        qpr = np.maximum(queries + rng.normal(0, queries * 0.05, n), 1.0)
        db_ms = qpr * (2.0 + 6.0 * db_effect) * np.exp(rng.normal(0, 0.05, n))
        total_err += err * ep_rate
        weighted_p95 += p95 * ep_rate
        out += [
            SeriesData("http.requests.rate", labels, "req/min", ep_rate),
            SeriesData("http.latency.p50", labels, "ms", p50),
            SeriesData(
                "http.latency.p95",
                labels,
                "ms",
                p95,
                importance=1.5 if endpoint == "/api/checkout" else 1.0,
            ),
            SeriesData(
                "http.errors.ratio",
                labels,
                "ratio",
                err,
                importance=1.5 if endpoint == "/api/checkout" else 1.0,
            ),
            SeriesData("db.queries.per_request", labels, "queries", qpr),
            SeriesData("db.time.ms", labels, "ms", db_ms),
        ]
    out += [
        SeriesData("http.requests.rate", {}, "req/min", rate, "Total request rate", 1.5),
        SeriesData("http.latency.p95", {}, "ms", weighted_p95 / rate, "Overall p95 latency", 2.0),
        SeriesData("http.errors.ratio", {}, "ratio", total_err / rate, "Share of 5xx", 2.0),
        SeriesData("system.cpu.utilization", {}, "ratio", cpu, "CPU busy share"),
        SeriesData("system.memory.utilization", {}, "ratio", memory, "Memory used share"),
        SeriesData("db.connections.active", {}, "connections", db_active, "DB connections"),
        SeriesData(
            "db.connections.utilization",
            {},
            "ratio",
            db_active / MAX_DB_CONNECTIONS,
            "Share of the DB connection pool in use",
        ),
        SeriesData("api.ratelimit.utilization", {}, "ratio", api_quota, "Share of API quota"),
        SeriesData(
            "celery.queue.backlog",
            {"queue": "celery"},
            "tasks",
            backlog.astype(float),
            "Tasks waiting in the Celery queue",
        ),
        SeriesData("users.active", {}, "users", np.round(rate / 6.0), "Active users"),
    ]
    return out, incidents


def _plan_incidents(ts: np.ndarray, span: float, step: float) -> list[Incident]:
    """Place incidents at fixed fractions of the period, at least a day from either end.

    The two most telling ones (DB pool exhaustion, a checkout error burst) fall in the last
    week, so a fresh `make run` shows them within the detectors' first backfill.
    """

    def at(fraction: float) -> float:
        t = ts[0] + 86400.0 + fraction * max(span - 2 * 86400.0, step)
        return float(ts[0] + np.floor((t - ts[0]) / step) * step)

    def days_before_end(days: float, fraction: float) -> float:
        """Recent incidents sit at a fixed age; in a world too short for that, at a fraction."""
        if span < (days + 1.5) * 86400.0:
            return at(fraction)
        return float(ts[0] + np.floor((ts[-1] - days * 86400.0 - ts[0]) / step) * step)

    recent_db = days_before_end(4.0, 0.30)
    recent_errors = days_before_end(1.5, 0.85)

    overall = ("http.latency.p95", {})
    return [
        Incident(
            "db-connection-exhaustion",
            "db_connections",
            ("db.connections.active", {}),
            [
                overall,
                ("http.latency.p95", {"endpoint": "/api/checkout"}),
                ("http.latency.p95", {"endpoint": "/api/search"}),
                ("db.time.ms", {"endpoint": "/api/checkout"}),
            ],
            recent_db,
            recent_db + 60 * 60,
            "A connection leak fills the DB pool; ten minutes later latency climbs everywhere.",
        ),
        Incident(
            "cpu-saturation",
            "cpu",
            ("system.cpu.utilization", {}),
            [overall, ("http.latency.p95", {"endpoint": "/api/reports"})],
            at(0.62),
            at(0.62) + 75 * 60,
            "A runaway batch job saturates CPU; latency follows five minutes later.",
        ),
        Incident(
            "checkout-error-burst",
            "errors",
            ("http.errors.ratio", {"endpoint": "/api/checkout"}),
            [("http.errors.ratio", {})],
            recent_errors,
            recent_errors + 40 * 60,
            "A bad deploy of checkout returns 5xx to about one request in ten.",
            change=("deploy", "checkout 2.3.1", {"endpoint": "/api/checkout"}, 180.0),
        ),
        Incident(
            "queue-backlog",
            "queue",
            ("celery.queue.backlog", {"queue": "celery"}),
            [],
            at(0.47),
            at(0.47) + 50 * 60,
            "A slow consumer lets the Celery queue back up.",
        ),
    ]


def build_events(
    start: float, end: float, users: int, rng: np.random.Generator
) -> tuple[DemoEvents, dict[str, str]]:
    ev = DemoEvents()
    kinds: dict[str, str] = {}
    span_days = (end - start) / 86400.0
    shares = np.array([*KIND_SHARES, 1.0 - sum(KIND_SHARES)])
    user_kind = rng.choice(len(shares), size=users, p=shares)
    # Feature habits that drive conversion and retention, for the insights system to find.
    for u in range(users):
        uid = f"u{u:05d}"
        k = int(user_kind[u])
        kind = KINDS[k] if k < len(KINDS) else "casual"
        kinds[uid] = kind
        signup = start + rng.uniform(0, 0.6) * span_days * 86400.0
        weekly_sessions = {
            "explorer": 3,
            "optimizer": 5,
            "achiever": 4,
            "socializer": 3.5,
            "casual": 0.25,
        }[kind] * rng.uniform(0.6, 1.4)
        n_sessions = max(1, rng.poisson(weekly_sessions * (end - signup) / (7 * 86400.0)))
        if kind == "casual":
            n_sessions = min(n_sessions, 2)
        favourite = rng.choice(len(FEATURES), size=3, replace=False)
        uses_templates = rng.random() < (0.6 if kind in ("optimizer", "achiever") else 0.2)
        purity = rng.uniform(0.7, 0.9)
        session_starts = np.sort(rng.uniform(signup, end - 600, n_sessions))
        retained = rng.random() < (0.8 if uses_templates else 0.45)
        for s_idx, s_start in enumerate(session_starts):
            if not retained and s_start > signup + 0.5 * (end - signup):
                break
            sid = f"{uid}-s{s_idx}"
            t = float(s_start)
            _emit(ev, uid, "session_start", t, sid, {})
            if s_idx == 0:
                _emit(ev, uid, "signup_completed", t + 5, sid, {})
            for _ in range(int(rng.integers(2, 7))):
                t += float(rng.exponential(45.0)) + 2.0
                own = rng.random() < purity
                style = kind if own and kind != "casual" else KINDS[int(rng.integers(0, 4))]
                _session_action(ev, uid, sid, t, style, favourite, uses_templates, rng)
            if rng.random() < (0.05 + (0.08 if uses_templates else 0.0)):
                _emit(
                    ev,
                    uid,
                    "purchase",
                    t + 30,
                    sid,
                    {"amount": round(float(rng.uniform(9, 99)), 2)},
                )
    order = np.argsort(np.array(ev.ts), kind="stable")
    return DemoEvents(
        *[
            [col[i] for i in order]
            for col in (ev.user_id, ev.name, ev.ts, ev.session_id, ev.properties)
        ]
    ), kinds


def _emit(ev: DemoEvents, uid: str, name: str, t: float, sid: str, props: dict) -> None:
    ev.user_id.append(uid)
    ev.name.append(name)
    ev.ts.append(t)
    ev.session_id.append(sid)
    ev.properties.append(props)


def _session_action(ev, uid, sid, t, style, favourite, uses_templates, rng) -> None:
    if style == "explorer":
        feature = FEATURES[int(rng.integers(0, len(FEATURES)))]
        _emit(
            ev,
            uid,
            "page_view" if rng.random() < 0.6 else "feature_use",
            t,
            sid,
            {"feature": feature},
        )
    elif style == "optimizer":
        if rng.random() < 0.55:
            _emit(
                ev,
                uid,
                "shortcut_used",
                t,
                sid,
                {"shortcut": SHORTCUTS[int(rng.integers(0, len(SHORTCUTS)))]},
            )
        else:
            feature = FEATURES[int(favourite[int(rng.integers(0, 3))])]
            if uses_templates and rng.random() < 0.3:
                feature = "templates"
            _emit(ev, uid, "feature_use", t, sid, {"feature": feature})
            _emit(
                ev,
                uid,
                "task_completed",
                t + 1,
                sid,
                {"duration_s": round(float(rng.uniform(15, 60)), 1)},
            )
    elif style == "achiever":
        roll = rng.random()
        if roll < 0.4:
            _emit(
                ev, uid, "goal_completed", t, sid, {"goal": GOALS[int(rng.integers(0, len(GOALS)))]}
            )
        elif roll < 0.6:
            _emit(ev, uid, "streak_day", t, sid, {})
        else:
            feature = (
                "templates"
                if uses_templates and rng.random() < 0.3
                else FEATURES[int(favourite[int(rng.integers(0, 3))])]
            )
            _emit(ev, uid, "feature_use", t, sid, {"feature": feature})
            _emit(
                ev,
                uid,
                "task_completed",
                t + 1,
                sid,
                {"duration_s": round(float(rng.uniform(90, 300)), 1)},
            )
    else:  # socializer
        roll = rng.random()
        name = (
            "share"
            if roll < 0.3
            else "comment"
            if roll < 0.65
            else "invite"
            if roll < 0.8
            else None
        )
        if name:
            _emit(ev, uid, name, t, sid, {})
        else:
            _emit(
                ev,
                uid,
                "page_view",
                t,
                sid,
                {"feature": ["feed", "profile", "comments", "teams"][int(rng.integers(0, 4))]},
            )


def build_world(*, end: float, days: int, users: int, seed: int, step_seconds: int) -> World:
    rng = np.random.default_rng(seed)
    n = int(days * 86400 // step_seconds)
    ts = end - step_seconds * np.arange(n, 0, -1, dtype=np.float64)
    series, incidents = build_metrics(ts, rng, float(step_seconds))
    events, kinds = build_events(float(ts[0]), float(end), users, rng)
    return World(ts=ts, series=series, incidents=incidents, events=events, user_kinds=kinds)

"""Synthetic telemetry for the optimization tests: series with known behaviour."""

from __future__ import annotations

import numpy as np
from django.utils import timezone

from telemetry.bulk import insert_samples
from telemetry.services import series_ensure

STEP = 300.0


def grid(days: float, *, end: float | None = None) -> np.ndarray:
    """Epoch timestamps every 5 minutes over ``days`` ending at ``end`` (default: now)."""
    end = end if end is not None else timezone.now().timestamp()
    end = np.floor(end / STEP) * STEP
    return end - np.arange(int(days * 86400 / STEP))[::-1] * STEP


def write(name: str, ts: np.ndarray, values, labels: dict | None = None, unit: str = ""):
    """Create the series if needed and insert its samples; returns the Series."""
    series = series_ensure(name=name, labels=labels or {}, unit=unit)
    values = np.broadcast_to(np.asarray(values, dtype=np.float64), ts.shape)
    insert_samples(np.full(ts.size, series.pk), ts, values)
    return series


def small_world(*, days: float = 2, seed: int = 0, latency_ms: float = 200.0) -> dict:
    """Two endpoints, overall request figures and two resources, all healthy by default.

    ``/r`` runs 40 queries per request (an N+1 by the series detector) against 5 for ``/f``.
    """
    rng = np.random.default_rng(seed)
    ts = grid(days)
    n = ts.size
    out = {"ts": ts}
    for endpoint, queries, db_ms, rate in (("/r", 40, 150, 30), ("/f", 5, 20, 100)):
        labels = {"endpoint": endpoint}
        write("http.requests.rate", ts, rng.normal(rate, 2, n), labels)
        write("http.latency.p50", ts, rng.normal(latency_ms * 0.6, 5, n), labels)
        out[f"p95{endpoint}"] = write("http.latency.p95", ts, rng.normal(latency_ms, 10, n), labels)
        write("db.queries.per_request", ts, rng.normal(queries, 1, n), labels)
        out[f"db{endpoint}"] = write("db.time.ms", ts, rng.normal(db_ms, 5, n), labels)
    write("http.requests.rate", ts, rng.normal(130, 3, n))
    out["latency"] = write("http.latency.p95", ts, rng.normal(latency_ms, 10, n))
    write("http.errors.ratio", ts, np.zeros(n))
    write("system.cpu.utilization", ts, rng.normal(0.4, 0.03, n))
    write("db.connections.utilization", ts, rng.normal(0.3, 0.03, n))
    return out

"""In-memory aggregation of request profiles, per endpoint and per minute.

The middleware must add well under a millisecond to a request and never write to the database
per request, so each request only appends a few numbers to the bucket of its endpoint and
minute under a lock; complete minutes are drained in one batch and written by
``optimization.services.performance_flush``. This module has no Django import so that the
bookkeeping can be tested and benchmarked alone.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .engine.bottlenecks import find_repeated_shapes

# Latencies kept per endpoint-minute for percentiles; beyond it, reservoir sampling keeps a
# uniform sample so memory stays bounded under any load.
LATENCY_RESERVOIR = 2048
# Minutes kept in memory when they cannot be written (the database is down, or flushing is
# off): older ones are dropped and counted, so a long outage costs data, never the process.
MAX_PENDING_MINUTES = 60


@dataclass
class ShapeFigures:
    """One query shape of one endpoint in one minute."""

    executions: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    n_plus_one_requests: int = 0
    repeats_sum: int = 0
    pattern_ms_sum: float = 0.0


@dataclass
class EndpointMinute:
    """Everything recorded for one endpoint in one minute."""

    endpoint: str
    minute: int  # epoch seconds of the minute's start
    requests: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    latencies: list[float] = field(default_factory=list)
    queries: int = 0
    db_ms: float = 0.0
    shapes: dict[str, ShapeFigures] = field(default_factory=dict)

    def add_latency(self, latency_ms: float) -> None:
        if len(self.latencies) < LATENCY_RESERVOIR:
            self.latencies.append(latency_ms)
            return
        slot = random.randrange(self.requests)  # requests already counts this one
        if slot < LATENCY_RESERVOIR:
            self.latencies[slot] = latency_ms

    def summary(self) -> dict[str, float]:
        """Per-minute figures, named like the telemetry series they feed."""
        latencies = np.asarray(self.latencies)
        p50, p95 = np.percentile(latencies, [50, 95]) if latencies.size else (0.0, 0.0)
        return {
            "requests": float(self.requests),
            "latency_mean_ms": self.latency_sum_ms / self.requests if self.requests else 0.0,
            "latency_p50_ms": float(p50),
            "latency_p95_ms": float(p95),
            "error_ratio": self.errors / self.requests if self.requests else 0.0,
            "queries_per_request": self.queries / self.requests if self.requests else 0.0,
            "db_ms_per_request": self.db_ms / self.requests if self.requests else 0.0,
        }


class PerformanceAggregator:
    """Thread-safe per-endpoint, per-minute buckets of request profiles."""

    def __init__(self, *, max_pending_minutes: int = MAX_PENDING_MINUTES) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, int], EndpointMinute] = {}
        self.max_pending_minutes = max_pending_minutes
        self._latest_minute = 0
        self.dropped_requests = 0  # requests of minutes dropped unwritten (see take_dropped)

    def record(
        self,
        *,
        endpoint: str,
        ts: float,
        latency_ms: float,
        status: int,
        queries: Sequence[tuple[str, float]],
    ) -> None:
        """Add one request: its latency, status and ordered ``(shape, ms)`` queries."""
        repeated = find_repeated_shapes(queries) if len(queries) >= 5 else []
        minute = int(ts // 60) * 60
        with self._lock:
            bucket = self._buckets.get((endpoint, minute))
            if bucket is None:
                if minute > self._latest_minute:  # once a minute: drop what is too old
                    self._latest_minute = minute
                    self._drop_before(minute - self.max_pending_minutes * 60)
                bucket = self._buckets[(endpoint, minute)] = EndpointMinute(endpoint, minute)
            bucket.requests += 1
            bucket.errors += status >= 500
            bucket.latency_sum_ms += latency_ms
            bucket.add_latency(latency_ms)
            bucket.queries += len(queries)
            shapes = bucket.shapes
            for shape, ms in queries:
                figures = shapes.get(shape)
                if figures is None:
                    figures = shapes[shape] = ShapeFigures()
                figures.executions += 1
                figures.total_ms += ms
                if ms > figures.max_ms:
                    figures.max_ms = ms
                bucket.db_ms += ms
            for run in repeated:
                figures = shapes[run.shape]
                figures.n_plus_one_requests += 1
                figures.repeats_sum += run.repeats
                figures.pattern_ms_sum += run.total_ms

    def drain(self, *, before: float | None = None) -> list[EndpointMinute]:
        """Remove and return the buckets of minutes that ended before ``before`` (all if None).

        The current minute stays so that its figures are written once, complete.
        """
        with self._lock:
            if before is None:
                done = list(self._buckets)
            else:
                limit = int(before // 60) * 60
                done = [key for key in self._buckets if key[1] < limit]
            return [self._buckets.pop(key) for key in done]

    def restore(self, buckets: Sequence[EndpointMinute]) -> None:
        """Put drained buckets back (a flush failed), merging with anything recorded since."""
        with self._lock:
            for bucket in buckets:
                key = (bucket.endpoint, bucket.minute)
                current = self._buckets.get(key)
                if current is None:
                    self._buckets[key] = bucket
                    continue
                current.requests += bucket.requests
                current.errors += bucket.errors
                current.latency_sum_ms += bucket.latency_sum_ms
                current.latencies.extend(bucket.latencies[:LATENCY_RESERVOIR])
                del current.latencies[LATENCY_RESERVOIR:]
                current.queries += bucket.queries
                current.db_ms += bucket.db_ms
                for shape, figures in bucket.shapes.items():
                    mine = current.shapes.setdefault(shape, ShapeFigures())
                    mine.executions += figures.executions
                    mine.total_ms += figures.total_ms
                    mine.max_ms = max(mine.max_ms, figures.max_ms)
                    mine.n_plus_one_requests += figures.n_plus_one_requests
                    mine.repeats_sum += figures.repeats_sum
                    mine.pattern_ms_sum += figures.pattern_ms_sum
            # a flush failing for long: its oldest minutes go, or memory grows without end
            self._drop_before(self._latest_minute - self.max_pending_minutes * 60)

    def _drop_before(self, limit: int) -> None:
        """Drop the buckets of minutes before ``limit`` (the lock is held)."""
        for key in [key for key in self._buckets if key[1] < limit]:
            self.dropped_requests += self._buckets.pop(key).requests

    def take_dropped(self) -> int:
        """Requests dropped unwritten since the last call (for a warning), and reset."""
        with self._lock:
            dropped, self.dropped_requests = self.dropped_requests, 0
            return dropped

    def __len__(self) -> int:
        return len(self._buckets)

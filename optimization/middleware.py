"""Request profiler: per-endpoint latency, status, query count, DB time and query shapes.

Each request runs with an execute wrapper on the connection of every configured database alias
(``django.db.connections``: a read replica's statements count as much as the primary's) that
times every statement and keeps its shape (:func:`optimization.engine.sql_shape.sql_shape`),
tagged with its alias when it is not ``default``. At the end of
the request a handful of numbers go into the process-wide :data:`AGGREGATOR`; nothing touches the
database. About once a minute a daemon thread drains the complete minutes and writes them with
``optimization.services.performance_flush`` (one transaction per flush), so the request that
crosses the minute does not pay for the write either.

Works in any Django project: add ``"optimization.middleware.PerformanceMiddleware"`` to
``MIDDLEWARE``. Settings (all optional): ``OPTIMIZATION_PROFILE_EXCLUDE`` (path prefixes not
profiled, default static files), ``OPTIMIZATION_FLUSH_SECONDS`` (default 60),
``OPTIMIZATION_FLUSH_IN_THREAD`` (default True; False leaves flushing to whoever calls
:func:`flush_recorded` in the serving process, as the tests do: the figures live in that
process's memory, so no other process can write them). Minutes that cannot be written stay in
memory for at most ``recording.MAX_PENDING_MINUTES`` (60); older ones are dropped, counted
and logged, so a database outage costs data, never the process's memory.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse

from .engine.bottlenecks import UNRESOLVED_ENDPOINT
from .engine.sql_shape import alias_tag, sql_shape
from .recording import MAX_PENDING_MINUTES, PerformanceAggregator

logger = logging.getLogger(__name__)

AGGREGATOR = PerformanceAggregator()
_flush_lock = threading.Lock()
_exit_hook = threading.Event()


def endpoint_name(request: HttpRequest) -> str:
    """The URL pattern that served the request, not its path, so ids do not explode the labels.

    Requests that matched no pattern share one name (mostly 404s: a path per probe would
    explode the labels); the analysis shows their figures but never ranks them.
    """
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match else None
    if not route:
        return UNRESOLVED_ENDPOINT
    route = route.lstrip("^").rstrip("$")
    if route.endswith("/?"):
        route = route[:-2]
    return "/" + route.rstrip("/")


def flush_recorded(*, before: float | None = None) -> int:
    """Write the complete minutes of :data:`AGGREGATOR`; returns the buckets written.

    On failure the buckets are put back so the next flush retries them.
    """
    from .services import performance_flush  # services import models: keep startup light

    with _flush_lock:
        dropped = AGGREGATOR.take_dropped()
        if dropped:
            logger.warning(
                "optimization: %d profiled requests were dropped unwritten (kept at most "
                "%d minutes while flushes failed or were off)",
                dropped,
                MAX_PENDING_MINUTES,
            )
        buckets = AGGREGATOR.drain(before=time.time() if before is None else before)
        if not buckets:
            return 0
        try:
            performance_flush(buckets=buckets)
        except Exception:
            AGGREGATOR.restore(buckets)
            raise
        return len(buckets)


def _flush_at_exit() -> None:
    """Write what is left, current minute included, when the process stops."""
    try:
        flush_recorded(before=time.time() + 60)
    except Exception:
        logger.exception("optimization: final flush of request profiles failed")


def _flush_in_background() -> None:
    try:
        flush_recorded()
    except Exception:  # a monitoring failure must never break the product
        logger.exception("optimization: flushing request profiles failed; will retry")
    finally:
        connections.close_all()


class PerformanceMiddleware:
    """Profile each request in memory; flush per-endpoint per-minute figures in the background."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.exclude = tuple(getattr(settings, "OPTIMIZATION_PROFILE_EXCLUDE", ("/static/",)))
        self.flush_seconds = float(getattr(settings, "OPTIMIZATION_FLUSH_SECONDS", 60))
        self.flush_in_thread = bool(getattr(settings, "OPTIMIZATION_FLUSH_IN_THREAD", True))
        self._next_flush = time.time() + self.flush_seconds
        # a flush period beyond the pending limit would drop minutes before their flush
        AGGREGATOR.max_pending_minutes = max(
            AGGREGATOR.max_pending_minutes, 2 * math.ceil(self.flush_seconds / 60) + 1
        )
        # (alias, tag) of every configured database, read once: settings do not change while
        # serving, and reading them opens no connection
        self.databases = tuple((alias, alias_tag(alias)) for alias in connections)
        if self.flush_in_thread and not _exit_hook.is_set():
            _exit_hook.set()
            atexit.register(_flush_at_exit)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(self.exclude):
            return self.get_response(request)
        queries: list[tuple[str, float]] = []
        wrappers = self._wrappers(queries.append)
        started = time.perf_counter()
        with _wrapping(wrappers):
            response = self.get_response(request)
        if response.streaming:
            self._record_when_streamed(request, response, wrappers, queries, started)
            return response
        self._record(
            endpoint_name(request),
            (time.perf_counter() - started) * 1000.0,
            response.status_code,
            queries,
        )
        return response

    def _wrappers(self, append: Callable[[tuple[str, float]], None]) -> list[tuple]:
        """One ``(connection, wrapper)`` per configured alias, all appending to one list.

        ``connections[alias]`` only builds (or returns this thread's) wrapper object; no
        connection is opened, so an alias the request never uses costs a list append and pop.
        One list keeps the statements of all databases in execution order, which the N+1 rule
        (consecutive repeats) needs; the alias tag keeps a replica's shapes apart.
        """
        clock = time.perf_counter
        wrappers = []
        for alias, tag in self.databases:  # default's tag is "": its shapes are unchanged

            def record_query(execute, sql, params, many, context, tag=tag):
                started = clock()
                try:
                    return execute(sql, params, many, context)
                finally:
                    append((tag + sql_shape(sql), (clock() - started) * 1000.0))

            wrappers.append((connections[alias], record_query))
        return wrappers

    def _record(
        self, endpoint: str, latency_ms: float, status: int, queries: list[tuple[str, float]]
    ) -> None:
        now = time.time()
        AGGREGATOR.record(
            endpoint=endpoint, ts=now, latency_ms=latency_ms, status=status, queries=queries
        )
        if self.flush_in_thread and now >= self._next_flush:
            self._next_flush = now + self.flush_seconds
            threading.Thread(target=_flush_in_background, daemon=True).start()

    def _record_when_streamed(self, request, response, wrappers, queries, started) -> None:
        """Record a streaming response once its body has been sent, not when the view returns.

        A streaming view (a CSV export over ``queryset.iterator()``) does its work while the
        server iterates the body, after the middleware has returned: recording at return
        measured about a millisecond and no query. The body's iterator is wrapped so its
        statements are profiled, and the request is recorded when the server closes the
        response (the WSGI and ASGI handlers always do, after the last byte or a disconnect):
        latency is time to the last byte, as in Sentry's and Datadog's request spans. A file
        (``FileResponse``) keeps its iterator so ``wsgi.file_wrapper`` still sends it; an async
        body's statements run in other threads and are not seen.
        """
        endpoint, status = endpoint_name(request), response.status_code
        if getattr(response, "file_to_stream", None) is None and not response.is_async:
            response.streaming_content = _profiled_chunks(response.streaming_content, wrappers)
        recorded = False

        def finish() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(endpoint, (time.perf_counter() - started) * 1000.0, status, queries)

        response._resource_closers.append(finish)


class _wrapping:
    """Install each ``(connection, wrapper)`` for the block, like nested ``execute_wrapper``.

    Django's context manager appends to ``connection.execute_wrappers`` and pops on exit; this
    does the same for every alias at once without a generator-based context manager per alias,
    so the per-request cost stays a few list operations however many databases are configured.
    """

    __slots__ = ("wrappers",)

    def __init__(self, wrappers: list[tuple]) -> None:
        self.wrappers = wrappers

    def __enter__(self) -> None:
        for conn, wrapper in self.wrappers:
            conn.execute_wrappers.append(wrapper)

    def __exit__(self, *exc_info) -> None:
        for conn, _ in self.wrappers:
            conn.execute_wrappers.pop()


def _profiled_chunks(chunks, wrappers):
    """Yield ``chunks`` with the statement wrappers installed while each one is produced.

    The wrappers are entered per chunk rather than across ``yield``: between chunks the thread
    may run other code whose wrappers must not be popped out of order. They are the wrapper
    objects of the thread that ran the view; a WSGI server iterates the body in that thread.
    """
    iterator = iter(chunks)
    installed = _wrapping(wrappers)
    while True:
        with installed:
            try:
                chunk = next(iterator)
            except StopIteration:
                return
        yield chunk

"""Request profiler: per-endpoint latency, status, query count, DB time and query shapes.

Every database connection object (one per alias and thread) carries one execute wrapper
(:func:`profile_connection`, installed when the connection is opened: the ``connection_created``
signal). It times a statement and keeps its shape (:func:`optimization.engine.sql_shape.sql_shape`,
tagged with its alias when it is not ``default``) only while a request is being profiled, i.e.
while the context variable :data:`_statements` holds that request's list. A context variable,
not the thread's connection, is what follows a request: under ASGI an async view's ORM calls
run in ``sync_to_async`` threads, which copy the request's context, so their statements land in
the request's list without the middleware ever leaving the event loop. At the end of the
request a handful of numbers go into the process-wide :data:`AGGREGATOR`; nothing touches the
database. About once a minute a daemon thread drains the complete minutes and writes them with
``optimization.services.performance_flush`` (one transaction per flush), so the request that
crosses the minute does not pay for the write either.

Works in any Django project, WSGI or ASGI: add ``"optimization.middleware.PerformanceMiddleware"``
to ``MIDDLEWARE``. Settings (all optional): ``OPTIMIZATION_PROFILE_EXCLUDE`` (path prefixes not
profiled, default static files), ``OPTIMIZATION_FLUSH_SECONDS`` (default 60),
``OPTIMIZATION_FLUSH_IN_THREAD`` (default True; False leaves flushing to whoever calls
:func:`flush_recorded` in the serving process, as the tests do: the figures live in that
process's memory, so no other process can write them). Minutes that cannot be written stay in
memory for at most ``recording.MAX_PENDING_MINUTES`` (60); older ones are dropped, counted
and logged, so a database outage costs data, never the process's memory.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse

from .engine.bottlenecks import UNRESOLVED_ENDPOINT
from .engine.sql_shape import alias_tag, sql_shape
from .recording import MAX_PENDING_MINUTES, PerformanceAggregator

logger = logging.getLogger(__name__)

AGGREGATOR = PerformanceAggregator()
# The status of a request the client abandoned before its response (nginx's 499): below 500,
# so not a server error, as the client's going away is not one.
CLIENT_CLOSED_REQUEST = 499
_flush_lock = threading.Lock()
_exit_hook = threading.Event()


class _RequestStatements(list):
    """The ``(shape, ms)`` statements of one request, closed once the request is recorded.

    A context outlives its request when the view hands it on: ``asyncio.create_task`` and
    ``contextvars.copy_context()`` copy it, and that task or thread may keep running
    statements long after the response (a polling loop, a pool job). Those statements belong
    to no request: once closed, the list is neither appended to (it would grow for as long as
    the task lives, with nobody reading it) nor are they timed and shaped.
    """

    __slots__ = ("closed",)

    def __init__(self) -> None:
        super().__init__()
        self.closed = False


# The list collecting the current request's statements, or None outside a profiled request
# (the wrapper then only passes the statement through; so it does for a closed list).
_statements: ContextVar[_RequestStatements | None] = ContextVar(
    "optimization_profiled_statements", default=None
)


def _statement_wrapper(tag: str) -> Callable:
    """The execute wrapper of one connection: time and shape the statement for the request
    whose list is in context; otherwise (a Celery task, the flush thread, a task the request
    left running after it ended) pass it through."""
    clock, current = time.perf_counter, _statements.get

    def record_statement(execute, sql, params, many, context):
        statements = current()
        if statements is None or statements.closed:
            return execute(sql, params, many, context)
        started = clock()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((tag + sql_shape(sql), (clock() - started) * 1000.0))

    record_statement.optimization_profiler = True
    return record_statement


def profile_connection(connection: BaseDatabaseWrapper, **kwargs) -> None:
    """Put the statement wrapper on ``connection`` once (the ``connection_created`` receiver).

    Each thread has its own connection objects, so they cannot be wrapped per request from the
    thread that runs the middleware (an async view's ORM runs in another one). Wrapping each
    object when it connects covers every thread, opens nothing (an alias no request uses is
    never connected) and costs a request nothing. The wrapper goes first in
    ``execute_wrappers``: Django's ``execute_wrapper()`` blocks pop the *last* item on exit, so
    a connection opened inside one of those must not get ours appended after theirs.
    """
    wrappers = connection.execute_wrappers
    if not any(getattr(w, "optimization_profiler", False) for w in wrappers):
        wrappers.insert(0, _statement_wrapper(alias_tag(connection.alias)))


def profile_statements() -> None:
    """Wrap every connection opened from now on, and this thread's already open ones.

    Called by the app's ``ready()`` (before any request or test opens a connection) and by the
    middleware (a project that installs the middleware without the app). Idempotent.
    """
    connection_created.connect(profile_connection, dispatch_uid="optimization.profile_connection")
    for connection in connections.all(initialized_only=True):
        profile_connection(connection)


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
    """Profile each request in memory; flush per-endpoint per-minute figures in the background.

    Sync- and async-capable (Django's hybrid middleware): under ASGI with an async view chain it
    runs as a coroutine on the event loop, so no request pays a thread hop for the profiler;
    under WSGI it is a plain call. Both paths share one recording: the statements of the request
    go to a list reached through :data:`_statements`, a context variable that
    ``sync_to_async`` carries into the thread where the ORM actually runs.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)  # Django then awaits us: no adapter, no thread
        self.exclude = tuple(getattr(settings, "OPTIMIZATION_PROFILE_EXCLUDE", ("/static/",)))
        self.flush_seconds = float(getattr(settings, "OPTIMIZATION_FLUSH_SECONDS", 60))
        self.flush_in_thread = bool(getattr(settings, "OPTIMIZATION_FLUSH_IN_THREAD", True))
        self._next_flush = time.time() + self.flush_seconds
        # a flush period beyond the pending limit would drop minutes before their flush
        AGGREGATOR.max_pending_minutes = max(
            AGGREGATOR.max_pending_minutes, 2 * math.ceil(self.flush_seconds / 60) + 1
        )
        profile_statements()
        if self.flush_in_thread and not _exit_hook.is_set():
            _exit_hook.set()
            atexit.register(_flush_at_exit)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        if request.path.startswith(self.exclude):
            return self.get_response(request)
        queries = _RequestStatements()
        started = time.perf_counter()
        token = _statements.set(queries)
        try:
            response = self.get_response(request)
        except BaseException:
            queries.closed = True  # not recorded: nothing may keep appending to it
            raise
        finally:
            _statements.reset(token)
        return self._finish(request, response, queries, started)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        """The same recording as :meth:`__call__`, awaited on the event loop.

        The view's ORM calls run in ``sync_to_async`` threads; each copies this task's context,
        so the statement wrapper of that thread's connection finds the request's list.
        """
        if request.path.startswith(self.exclude):
            return await self.get_response(request)
        queries = _RequestStatements()
        started = time.perf_counter()
        token = _statements.set(queries)
        try:
            response = await self.get_response(request)
        except asyncio.CancelledError:
            # Django cancels the request when the client disconnects (a proxy's timeout on a
            # slow view). Run in a thread, as the sync-only profiler was, the request was
            # still recorded; here it would vanish with its latency and statements, and the
            # slowest requests would be the missing ones. Recorded as nginx logs it.
            latency_ms = (time.perf_counter() - started) * 1000.0
            self._record(endpoint_name(request), latency_ms, CLIENT_CLOSED_REQUEST, queries)
            raise
        except BaseException:
            queries.closed = True
            raise
        finally:
            _statements.reset(token)
        return self._finish(request, response, queries, started)

    def _finish(
        self,
        request: HttpRequest,
        response: HttpResponse,
        queries: _RequestStatements,
        started: float,
    ) -> HttpResponse:
        if response.streaming:
            self._record_when_streamed(request, response, queries, started)
        else:
            self._record(
                endpoint_name(request),
                (time.perf_counter() - started) * 1000.0,
                response.status_code,
                queries,
            )
        return response

    def _record(
        self, endpoint: str, latency_ms: float, status: int, queries: _RequestStatements
    ) -> None:
        queries.closed = True  # what runs in this request's context from now on is not its
        now = time.time()
        AGGREGATOR.record(
            endpoint=endpoint, ts=now, latency_ms=latency_ms, status=status, queries=queries
        )
        if self.flush_in_thread and now >= self._next_flush:
            self._next_flush = now + self.flush_seconds
            threading.Thread(target=_flush_in_background, daemon=True).start()

    def _record_when_streamed(self, request, response, queries, started) -> None:
        """Record a streaming response once its body has been sent, not when the view returns.

        A streaming view (a CSV export over ``queryset.iterator()``) does its work while the
        server iterates the body, after the middleware has returned: recording at return
        measured about a millisecond and no query. The body's iterator (sync or async) is
        wrapped so its statements are profiled, and the request is recorded when the server
        closes the response (the WSGI and ASGI handlers always do, after the last byte or a
        disconnect): latency is time to the last byte, as in Sentry's and Datadog's request
        spans. A file (``FileResponse``) keeps its iterator so ``wsgi.file_wrapper`` still
        sends it.
        """
        endpoint, status = endpoint_name(request), response.status_code
        if response.is_async:
            response.streaming_content = _profiled_async_chunks(response.streaming_content, queries)
        elif getattr(response, "file_to_stream", None) is None:
            response.streaming_content = _profiled_chunks(response.streaming_content, queries)
        recorded = False

        def finish() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(endpoint, (time.perf_counter() - started) * 1000.0, status, queries)

        response._resource_closers.append(finish)


def _profiled_chunks(chunks, queries: _RequestStatements):
    """Yield ``chunks`` with the request's statement list in context while each is produced.

    The list is set per chunk rather than across ``yield``: between chunks the thread runs the
    server's code (and, under ASGI, Django consumes a sync body in a ``sync_to_async`` thread:
    the context variable goes with it, the wrappers are already on that thread's connections).
    """
    iterator = iter(chunks)
    while True:
        token = _statements.set(queries)
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        finally:
            _statements.reset(token)
        yield chunk


async def _profiled_async_chunks(chunks, queries: _RequestStatements):
    """The async body's twin of :func:`_profiled_chunks`: its ``sync_to_async`` ORM calls
    copy the context of the task iterating the body, so they see the request's list."""
    iterator = aiter(chunks)
    while True:
        token = _statements.set(queries)
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        finally:
            _statements.reset(token)
        yield chunk

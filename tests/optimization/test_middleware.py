"""The profiler middleware: per-request recording in memory, no database write per request."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from optimization import middleware
from optimization.models import EndpointProfile, QueryShapeStat
from telemetry import selectors as telemetry

pytestmark = pytest.mark.django_db


@pytest.fixture
def profiled(settings, postgres):
    settings.ROOT_URLCONF = "tests.optimization.urls_profiled"
    settings.OPTIMIZATION_FLUSH_IN_THREAD = False
    if "optimization.middleware.PerformanceMiddleware" not in settings.MIDDLEWARE:
        settings.MIDDLEWARE = [
            *settings.MIDDLEWARE,
            "optimization.middleware.PerformanceMiddleware",
        ]
    middleware.AGGREGATOR.drain()
    yield
    middleware.AGGREGATOR.drain()


def test_requests_are_profiled_in_memory_and_flushed_in_one_batch(client, profiled, monkeypatch):
    # The three requests land in one minute: on the wall clock they straddled a minute's
    # end one run in a few dozen (two buckets).
    start = (time.time() // 60) * 60 + 1.0
    monkeypatch.setattr(
        middleware, "time", SimpleNamespace(time=lambda: start, perf_counter=time.perf_counter)
    )
    with CaptureQueriesContext(connection) as captured:
        for pk in (1, 2, 0):
            client.get(f"/books/{pk}/")
    # the middleware itself ran no statement: only the view's 7 per request
    assert len(captured) == 21
    assert all("pg_sleep" in q["sql"] or q["sql"] == "SELECT 1" for q in captured)
    assert len(middleware.AGGREGATOR) == 1  # three requests, one endpoint-minute bucket

    written = middleware.flush_recorded(before=time.time() + 120)
    assert written == 1 and len(middleware.AGGREGATOR) == 0
    endpoint = "/books/<int:pk>"
    profile = EndpointProfile.objects.get(endpoint=endpoint)
    assert profile.requests == 3 and profile.errors == 1 and profile.queries == 21
    loop = QueryShapeStat.objects.get(endpoint=endpoint, shape__contains="pg_sleep")
    assert loop.executions == 18 and loop.n_plus_one_requests == 3
    assert loop.pattern_ms_sum >= 3 * 6 * 10
    rate = telemetry.series_get("http.requests.rate", {"endpoint": endpoint})
    assert telemetry.series_values(rate.pk)[1].tolist() == [3.0]
    errors = telemetry.series_get("http.errors.ratio", {"endpoint": endpoint})
    assert telemetry.series_values(errors.pk)[1][0] == pytest.approx(1 / 3)


def test_a_streaming_response_is_recorded_with_the_work_done_while_it_streams(client, profiled):
    response = client.get("/export/")
    assert len(middleware.AGGREGATOR) == 0  # nothing sent yet: nothing to record
    assert b"".join(response.streaming_content) == b"0\n1\n2\n3\n"
    download = client.get("/download/")
    b"".join(download.streaming_content)
    middleware.flush_recorded(before=time.time() + 120)

    export = EndpointProfile.objects.get(endpoint="/export")
    assert export.requests == 1 and export.queries == 4
    assert export.db_ms_sum >= 4 * 10 and export.latency_ms_sum >= export.db_ms_sum
    loop = QueryShapeStat.objects.get(endpoint="/export", shape__contains="pg_sleep")
    assert loop.executions == 4
    assert EndpointProfile.objects.get(endpoint="/download").requests == 1


def test_a_file_response_keeps_its_file_for_the_server_and_is_recorded_at_close(
    rf, settings, profiled
):
    from django.http import FileResponse
    from django.urls import resolve

    def view(request):
        request.resolver_match = resolve("/download/")
        return FileResponse(open(__file__, "rb"))  # the response closes it

    response = middleware.PerformanceMiddleware(view)(rf.get("/download/"))
    assert response.file_to_stream is not None  # wsgi.file_wrapper can still send the file
    assert len(middleware.AGGREGATOR) == 0
    response.close()
    response.close()  # servers may close twice: one request all the same
    (bucket,) = middleware.AGGREGATOR.drain()
    assert bucket.endpoint == "/download" and bucket.requests == 1


def test_a_long_database_outage_keeps_at_most_an_hour_in_memory(profiled, monkeypatch, caplog):
    """Every failed flush put its minutes back: two hours without a database held two hours
    of buckets (each up to 2,048 latencies per endpoint), growing for as long as it lasted."""
    from optimization import services
    from optimization.recording import MAX_PENDING_MINUTES

    def down(*, buckets):
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(services, "performance_flush", down)
    caplog.set_level("WARNING", logger="optimization.middleware")
    start = (time.time() // 60) * 60 + 60  # after every minute other tests recorded
    for minute in range(120):
        ts = start + minute * 60
        for endpoint in ("/a", "/b"):
            middleware.AGGREGATOR.record(endpoint=endpoint, ts=ts, latency_ms=5.0, status=200,
                                         queries=[])  # fmt: skip
        if minute:  # the minute before is complete: its flush fails
            with pytest.raises(ConnectionError):
                middleware.flush_recorded(before=ts)
    assert len(middleware.AGGREGATOR) <= 2 * (MAX_PENDING_MINUTES + 1)

    monkeypatch.undo()  # the database is back: the last hour lands
    middleware.flush_recorded(before=start + 121 * 60)
    kept = sum(EndpointProfile.objects.filter(endpoint="/a").values_list("requests", flat=True))
    assert MAX_PENDING_MINUTES <= kept < 120
    # and every request lost was logged, as it was dropped
    logged = re.findall(r"(\d+) profiled requests were dropped", caplog.text)
    assert sum(map(int, logged)) == 2 * (120 - kept)


def test_a_long_flush_period_keeps_its_minutes_until_the_flush(settings, monkeypatch):
    from optimization.recording import MAX_PENDING_MINUTES, PerformanceAggregator

    monkeypatch.setattr(middleware, "AGGREGATOR", PerformanceAggregator())
    settings.OPTIMIZATION_FLUSH_SECONDS = 3 * 3600
    middleware.PerformanceMiddleware(lambda request: None)
    assert middleware.AGGREGATOR.max_pending_minutes > 3 * 60 > MAX_PENDING_MINUTES


def test_endpoint_names_use_the_route_not_the_path(rf):
    from django.urls import resolve

    request = rf.get("/admin/api/phase3/optimization/recommendations/12/")
    request.resolver_match = resolve(request.path)
    assert "12" not in middleware.endpoint_name(request)
    bare = rf.get("/nowhere")
    assert middleware.endpoint_name(bare) == "<unresolved>"


def test_profiled_requests_feed_the_analysis_end_to_end(client, profiled):
    from optimization import services

    for pk in range(1, 6):
        client.get(f"/books/{pk}/")
    middleware.flush_recorded(before=time.time() + 120)
    result = services.analysis_compute(now=timezone.now() + timedelta(hours=1))
    endpoint = "/books/<int:pk>"
    shares = {row["endpoint"]: row for row in result.bottlenecks["endpoints"]}
    assert shares[endpoint]["requests"] == 5  # exact counts from the profiler's totals
    finding = next(f for f in result.bottlenecks["n_plus_one"] if f["endpoint"] == endpoint)
    assert finding["source"] == "requests" and "pg_sleep" in finding["shape"]
    assert finding["requests_with_pattern"] == finding["requests_total"] == 5
    draft = next(d for d in result.drafts if d.category == "n_plus_one" and d.endpoint == endpoint)
    assert "5 of 5 requests" in draft.confidence_explanation


@pytest.fixture(scope="session")
def _replica_closed_before_the_test_database_is_dropped(django_db_setup, django_db_blocker):
    """The mirror alias holds a connection of its own to the test database: a test's atomic
    block defers its close, so it is closed here, before the database is dropped."""
    from django.db import connections

    yield
    if "replica" in connections:
        with django_db_blocker.unblock():
            connections["replica"].close()


@pytest.fixture
def replica(settings, _replica_closed_before_the_test_database_is_dropped):
    """The second alias (``phase3.settings`` adds it under PHASE3_TESTING on PostgreSQL)."""
    if "replica" not in settings.DATABASES:
        pytest.skip("no second database alias configured (PHASE3_TESTING on PostgreSQL)")
    return "replica"


@pytest.mark.django_db(databases=["default", "replica"])
def test_statements_on_a_second_database_are_counted_and_shaped(client, profiled, replica):
    from optimization.engine.sql_shape import alias_tag, shape_database

    client.get("/books/1/")  # default only
    client.get("/replica/books/")
    middleware.flush_recorded(before=time.time() + 120)

    profile = EndpointProfile.objects.get(endpoint="/replica/books")
    assert profile.queries == 7 and profile.db_ms_sum >= 6 * 10
    on_replica = QueryShapeStat.objects.get(endpoint="/replica/books", database=replica)
    assert on_replica.shape.startswith(alias_tag(replica)) and "pg_sleep" in on_replica.shape
    assert on_replica.executions == 6 and on_replica.n_plus_one_requests == 1
    assert shape_database(on_replica.shape)[0] == replica
    on_default = QueryShapeStat.objects.get(endpoint="/replica/books", database="default")
    assert on_default.shape == "SELECT ?"

    # a request on default alone is profiled as before: bare shapes, same key as the replica's
    # statement would have had there, nothing under the other alias
    books = QueryShapeStat.objects.filter(endpoint="/books/<int:pk>")
    assert set(books.values_list("database", flat=True)) == {"default"}
    loop = books.get(shape__contains="pg_sleep")
    assert loop.shape == shape_database(on_replica.shape)[1]
    assert loop.shape_key != on_replica.shape_key
    assert EndpointProfile.objects.get(endpoint="/books/<int:pk>").queries == 7


@pytest.mark.django_db(databases=["default", "replica"])
def test_an_unused_alias_opens_no_connection(client, profiled, replica, monkeypatch):
    from django.db import connections

    opened = []
    before = list(connections[replica].execute_wrappers)
    monkeypatch.setattr(connections[replica], "ensure_connection", lambda: opened.append(1))
    client.get("/books/1/")
    client.get("/books/2/")
    assert opened == []  # profiling an alias never connects it
    assert connections[replica].execute_wrappers == before  # and requests leave no wrapper
    profilers = [w for w in before if getattr(w, "optimization_profiler", False)]
    assert len(profilers) <= 1  # at most the one put on when it was opened


@pytest.mark.django_db(databases=["default", "replica"])
def test_a_streaming_response_sees_statements_on_a_second_database(client, profiled, replica):
    response = client.get("/replica/export/")
    assert b"".join(response.streaming_content) == b"0\n1\n2\n"
    middleware.flush_recorded(before=time.time() + 120)

    export = EndpointProfile.objects.get(endpoint="/replica/export")
    assert export.requests == 1 and export.queries == 3 and export.db_ms_sum >= 3 * 10
    loop = QueryShapeStat.objects.get(endpoint="/replica/export", database=replica)
    assert loop.executions == 3


# --- ASGI: the async path records what the sync path records, without a thread hop ---------


def _consume(response) -> bytes:
    """The body of a streaming response, as a server sends it (async bodies on a loop)."""
    if not response.is_async:
        return b"".join(response.streaming_content)

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


def _figures(bucket) -> dict:
    """What a request profile says apart from the clock: counts, shapes and N+1 runs."""
    return {
        "endpoint": bucket.endpoint,
        "requests": bucket.requests,
        "errors": bucket.errors,
        "queries": bucket.queries,
        "shapes": {
            shape: (f.executions, f.n_plus_one_requests, f.repeats_sum)
            for shape, f in bucket.shapes.items()
        },
    }


def _recorded(send, paths) -> dict:
    """Send ``paths`` with ``send`` (consuming streamed bodies), then drain what was recorded."""
    for path in paths:
        response = send(path)
        if response.streaming:
            assert len(middleware.AGGREGATOR) == 0  # recorded at close, not at return
            _consume(response)
    buckets = middleware.AGGREGATOR.drain()
    for bucket in buckets:  # the clock differs between runs; its relations must not
        assert bucket.latency_sum_ms >= bucket.db_ms > 0
    return {b.endpoint: (_figures(b), b.db_ms) for b in buckets}


@pytest.mark.parametrize(
    "paths, slow_statements",
    [
        (["/async/books/1/", "/async/books/2/", "/async/books/0/"], 18),
        (["/async/export/"], 4),  # an async streaming body
        (["/export/"], 4),  # a sync streaming body served to the async path
        (["/books/1/", "/books/0/"], 12),  # a sync view under ASGI
        (["/async/elsewhere/"], 6),  # statements on a thread the middleware never ran on
    ],
)
def test_the_async_path_records_what_the_sync_path_records(
    client, async_client, profiled, paths, slow_statements
):
    """The same requests through WSGI's sync path and through the async path (``AsyncClient``,
    so the middleware is awaited on an event loop while the ORM runs in other threads)."""
    through_sync = _recorded(client.get, paths)
    through_async = _recorded(async_to_sync(async_client.get), paths)

    assert through_async.keys() == through_sync.keys() and len(through_sync) == 1
    (endpoint,) = through_sync
    figures, db_ms_sync = through_sync[endpoint]
    assert through_async[endpoint][0] == figures
    assert figures["requests"] == len(paths)
    slow = next(v for s, v in figures["shapes"].items() if "pg_sleep" in s)
    assert slow[0] == slow_statements
    # each 10 ms statement was timed on both paths
    assert min(db_ms_sync, through_async[endpoint][1]) >= slow_statements * 10


def test_the_async_path_writes_the_same_rows_as_the_sync_path(client, async_client, profiled):
    from optimization.engine.sql_shape import shape_key

    def rows(endpoint):
        profile = EndpointProfile.objects.get(endpoint=endpoint)
        shapes = {
            (s.shape_key, s.executions, s.n_plus_one_requests, s.repeats_sum, s.database)
            for s in QueryShapeStat.objects.filter(endpoint=endpoint)
        }
        return (profile.requests, profile.errors, profile.queries), shapes

    for pk in (1, 0):
        client.get(f"/books/{pk}/")
    middleware.flush_recorded(before=time.time() + 120)
    for pk in (1, 0):
        async_to_sync(async_client.get)(f"/async/books/{pk}/")
    middleware.flush_recorded(before=time.time() + 120)

    sync_profile, sync_shapes = rows("/books/<int:pk>")
    async_profile, async_shapes = rows("/async/books/<int:pk>")
    assert async_profile == (2, 1, sync_profile[2] + 2)  # + the async ORM call per request
    orm = {s for s in async_shapes if s not in sync_shapes}
    assert len(orm) == 1 and next(iter(orm))[1:3] == (2, 0)
    assert async_shapes - orm == sync_shapes  # the N+1 loop: same key, counts, runs
    assert shape_key("SELECT pg_sleep(?), ?") in {s[0] for s in sync_shapes}


def test_django_awaits_the_middleware_without_adapting_it(settings, monkeypatch):
    """Sync-only, Django wrapped the profiler in ``sync_to_async`` under ASGI: one thread hop
    per request, and an async view then ran behind an ``async_to_sync`` hop back."""
    from asgiref.sync import iscoroutinefunction
    from django.core.handlers import base

    adapted = []
    for name in ("sync_to_async", "async_to_sync"):
        real = getattr(base, name)
        monkeypatch.setattr(
            base, name, lambda fn, *a, _real=real, **k: adapted.append(fn) or _real(fn, *a, **k)
        )
    settings.MIDDLEWARE = ["optimization.middleware.PerformanceMiddleware"]
    handler = base.BaseHandler()
    handler.load_middleware(is_async=True)
    assert adapted == [] and iscoroutinefunction(handler._middleware_chain)

    async def view(request):
        return None

    assert iscoroutinefunction(middleware.PerformanceMiddleware(view))
    assert not iscoroutinefunction(middleware.PerformanceMiddleware(lambda request: None))


def test_statements_outside_a_request_are_not_recorded(profiled):
    """The wrapper stays on the connection between requests (a Celery task, the flush thread):
    it must only pass those statements through."""
    from django.db import connection as default

    with default.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.01)")
    assert len(middleware.AGGREGATOR) == 0
    assert middleware._statements.get() is None


@pytest.mark.parametrize("path", ["/handoff/", "/async/handoff/"])
def test_statements_run_in_a_context_the_request_handed_on_are_not_recorded_after_it(
    client, async_client, profiled, monkeypatch, path
):
    """A task or thread started with the request's context (``asyncio.create_task``,
    ``copy_context().run``) may run statements long after the response. They belong to no
    request: before, each was timed and shaped and appended to the recorded request's list,
    which grew for as long as the task lived."""
    from tests.optimization import urls_profiled

    urls_profiled.HANDED_ON.clear()
    send = client.get if path == "/handoff/" else async_to_sync(async_client.get)
    assert send(path).status_code == 200
    (bucket,) = middleware.AGGREGATOR.drain()
    assert bucket.requests == 1 and bucket.queries == 1
    (handed_on,) = urls_profiled.HANDED_ON

    shaped = []
    real_shape = middleware.sql_shape
    monkeypatch.setattr(middleware, "sql_shape", lambda sql: shaped.append(sql) or real_shape(sql))
    later = handed_on.run(middleware._statements.get)
    later = getattr(later, "__self__", later)  # the list (before: its bound ``append``)
    held = len(later)

    def after_the_request() -> None:
        with connection.cursor() as cursor:
            for _ in range(50):
                cursor.execute("SELECT 1")

    handed_on.run(after_the_request)
    assert shaped == []  # not timed and shaped for nobody
    assert len(later) == held  # and kept nowhere: no list grows with the task's statements
    assert len(middleware.AGGREGATOR) == 0


def test_a_request_cancelled_by_a_client_disconnect_is_recorded_under_asgi(rf, profiled):
    """Django cancels the request's task when the client disconnects (a load balancer's
    timeout on a slow view). The sync-only profiler ran in a thread the cancel did not stop
    and recorded the request; awaited on the loop, the profiler lost it, its latency and the
    statements it had run: the slowest requests were the ones missing."""
    import asyncio

    from asgiref.sync import sync_to_async
    from django.urls import resolve

    from tests.optimization.urls_profiled import _slow_row

    async def slow_view(request):
        await sync_to_async(_slow_row)(0)
        await asyncio.sleep(60)  # still working when the client gives up

    profiler = middleware.PerformanceMiddleware(slow_view)
    request = rf.get("/async/export/")
    request.resolver_match = resolve("/async/export/")

    async def client_goes_away() -> None:
        task = asyncio.ensure_future(profiler(request))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # the cancel still reaches Django

    async_to_sync(client_goes_away)()
    (bucket,) = middleware.AGGREGATOR.drain()
    assert (bucket.endpoint, bucket.requests, bucket.errors) == ("/async/export", 1, 0)
    assert bucket.queries == 1 and bucket.db_ms >= 10
    assert bucket.latency_sum_ms >= 300


def test_a_connection_opened_inside_an_execute_wrapper_block_keeps_both_right():
    """Django's ``execute_wrapper()`` pops the last wrapper on exit. A connection first opened
    inside such a block gets the profiler's wrapper then: appended, it would be popped in the
    block's place, leaving the block's wrapper on the connection for good."""
    import threading

    from django.db import connections

    seen, after = [], []

    def theirs(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    def in_a_new_thread() -> None:  # its connection objects have never been opened
        conn = connections["default"]
        try:
            with conn.execute_wrapper(theirs):
                with conn.cursor() as cursor:  # opens it: the profiler's wrapper goes on
                    cursor.execute("SELECT 1")
            after.extend(conn.execute_wrappers)
        finally:
            conn.close()

    thread = threading.Thread(target=in_a_new_thread)
    thread.start()
    thread.join()
    assert seen == ["SELECT 1"]
    assert theirs not in after
    assert [getattr(w, "optimization_profiler", False) for w in after] == [True]

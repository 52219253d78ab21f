"""Cost of the optimization profiler: requests/second with and without PerformanceMiddleware.

    .venv/bin/python bench/middleware.py [--requests 400] [--rounds 9] [--queries 10] [--use-env-db]
                                         [--asgi]

Both handlers are built in the same process from the project's own settings (its full
middleware stack) and differ only by ``optimization.middleware.PerformanceMiddleware``. They
serve the same ORM endpoint, defined here, which runs ``--queries`` statements per request
(a list, then an N+1 loop of lookups: the profiler's worst case, since it wraps every
statement). Rounds alternate which handler goes first so drift (CPU frequency, cache, other
load) hits both alike; the figure is the median requests/second of each, their ratio (goal
>= 0.95) and the added time per request. Background flushing is on with a 1 s period, sixty
times more often than in production, so its cost is included.

By default the endpoint runs on a fresh, migrated SQLite file: its statements cost tens of
microseconds, so the request is CPU-bound and the profiler's share is as large as it gets (the
worst case for the ratio). ``--use-env-db`` uses ``DATABASE_URL`` instead (e.g. PostgreSQL),
where network round trips dominate and the ratio is closer to 1 but noisier; the profiler's
own rows for ``/bench`` are deleted at the end, but use a scratch database all the same.

``--asgi`` serves the endpoint as an async view (its ORM work in one ``sync_to_async`` call,
the recommended pattern) through Django's ``ASGIHandler``, driven on an event loop in this
process, and adds a third handler: the profiler made sync-only as it was before
(``SyncOnlyProfiler``), which Django adapts with a thread hop around it. The ratio that must
reach 0.95 is still with / without; sync-only / without shows what the hop cost.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phase3.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")  # DEBUG logs every query: both sides would pay it

PROFILER = "optimization.middleware.PerformanceMiddleware"
SYNC_ONLY_PROFILER = f"{__name__}.SyncOnlyProfiler"
urlpatterns: list = []


def _sync_only_profiler():
    """The profiler as it was before it was async-capable: Django runs it in a thread under
    ASGI (defined lazily: the middleware module needs settings)."""
    from optimization.middleware import PerformanceMiddleware

    class SyncOnlyProfiler(PerformanceMiddleware):
        async_capable = False

    return SyncOnlyProfiler


def _view(queries: int):
    from django.http import JsonResponse

    from telemetry.models import Series

    def endpoint(request):
        ids = list(Series.objects.order_by("pk").values_list("pk", flat=True)[: queries - 1])
        names = [Series.objects.filter(pk=pk).values_list("name", flat=True).first() for pk in ids]
        return JsonResponse({"names": names})

    return endpoint


def _async_view(queries: int):
    """The same ORM work as :func:`_view`, from an async view through ``sync_to_async``."""
    from asgiref.sync import sync_to_async

    work = sync_to_async(_view(queries))

    async def endpoint(request):
        return await work(request)

    return endpoint


async def _empty_view(request):
    from django.http import HttpResponse

    return HttpResponse(b"")


def _handler(middleware: list[str], asgi: bool = False):
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    with override_settings(MIDDLEWARE=middleware):
        return ASGIHandler() if asgi else WSGIHandler()


def _run_asgi(handler, n: int) -> tuple[float, float]:
    """:func:`_run` for an ASGI handler: ``n`` requests in turn on one event loop."""
    import asyncio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/bench/",
        "raw_path": b"/bench/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    status = []

    async def serve() -> None:
        never = asyncio.Event()  # the client never disconnects
        for _ in range(n):
            messages = [{"type": "http.request", "body": b"", "more_body": False}]

            async def receive():
                if messages:
                    return messages.pop()
                await never.wait()

            async def send(message):
                if message["type"] == "http.response.start":
                    status.append(message["status"])

            await handler(dict(scope), receive, send)

    started, cpu_started = time.perf_counter(), time.process_time()
    asyncio.run(serve())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if status[-1] != 200:
        raise SystemExit(f"bench endpoint answered {status[-1]}")
    return n / elapsed, n / cpu


def _run(handler, n: int) -> tuple[float, float]:
    """Requests per wall-clock second and per CPU second of this process (flush thread included)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/bench/",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "localhost",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
    }
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)

    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(n):
        body = handler(dict(environ, **{"wsgi.input": io.BytesIO(b"")}), start_response)
        b"".join(body)
        body.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if not status[-1].startswith("200"):
        raise SystemExit(f"bench endpoint answered {status[-1]}")
    return n / elapsed, n / cpu


def _check_recorded(handler, run, queries: int, n: int = 20) -> None:
    """Exit unless the profiler saw every request and statement: a bench of a profiler that
    records nothing (under ASGI, statements run in other threads) would flatter it."""
    from optimization.middleware import AGGREGATOR

    AGGREGATOR.drain()
    run(handler, n)
    seen = [b for b in AGGREGATOR.drain() if b.endpoint == "/bench"]
    requests = sum(b.requests for b in seen)
    statements = sum(b.queries for b in seen)
    if (requests, statements) != (n, n * queries):
        raise SystemExit(
            f"the profiler recorded {requests} requests and {statements} statements "
            f"for {n} requests of {queries} statements"
        )


def _alone_us(n: int = 2000, rounds: int = 7) -> dict[str, float]:
    """Microseconds per request of a handler whose only middleware is the profiler (or none),
    around an async view that runs no statement, each request in its own
    ``ThreadSensitiveContext`` as ``ASGIHandler`` does: what the profiler costs by itself under
    ASGI, and what the thread hop of a sync-only profiler cost (median of ``rounds``)."""
    import asyncio

    from asgiref.sync import ThreadSensitiveContext
    from django.core.handlers.base import BaseHandler
    from django.test import AsyncRequestFactory
    from django.test.utils import override_settings

    chains = {}
    for name, middleware in (
        ("without", []),
        ("with", [PROFILER]),
        ("sync-only", [SYNC_ONLY_PROFILER]),
    ):
        handler = BaseHandler()
        with override_settings(MIDDLEWARE=middleware):
            handler.load_middleware(is_async=True)
        chains[name] = handler
    request = AsyncRequestFactory().get("/bench/empty/")

    async def serve(handler) -> float:
        started = time.perf_counter()
        for _ in range(n):
            async with ThreadSensitiveContext():
                await handler.get_response_async(request)
        return (time.perf_counter() - started) / n * 1e6

    times: dict[str, list[float]] = {name: [] for name in chains}
    for round_no in range(rounds):
        names = list(chains)
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(asyncio.run(serve(chains[name])))
    return {name: statistics.median(values) for name, values in times.items()}


def _bookkeeping_us(queries: int, n: int = 20000) -> tuple[float, float, float]:
    """Microseconds the profiler spends per request outside the database, measured alone:
    its statement wrapper (timing + shape) for ``queries`` statements inside a request, then
    the aggregation; and nanoseconds the wrapper adds to a statement outside any request."""
    from optimization.middleware import _RequestStatements, _statement_wrapper, _statements
    from optimization.recording import PerformanceAggregator

    sqls = [
        f"SELECT name FROM telemetry_series WHERE id = %s /* {i % 2} */" for i in range(queries)
    ]
    recorded = _RequestStatements()
    clock = time.perf_counter
    wrapper = _statement_wrapper("")

    def execute(sql, params, many, context):
        return None

    rounds = n // queries
    started = clock()
    for _ in range(rounds):
        for sql in sqls:
            execute(sql, None, False, None)
    bare = clock() - started
    started = clock()
    for _ in range(rounds):
        for sql in sqls:
            wrapper(execute, sql, None, False, None)
    passing = (clock() - started - bare) / (rounds * queries) * 1e9
    token = _statements.set(recorded)
    started = clock()
    for _ in range(rounds):
        for sql in sqls:
            wrapper(execute, sql, None, False, None)
    per_query = (clock() - started) / (rounds * queries) * 1e6
    _statements.reset(token)
    aggregator, batch = PerformanceAggregator(), recorded[:queries]
    now = time.time()
    started = clock()
    for _ in range(n):
        aggregator.record(endpoint="/bench", ts=now, latency_ms=1.0, status=200, queries=batch)
    per_request = (clock() - started) / n * 1e6
    return per_query * queries, per_request, passing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--queries", type=int, default=10, help="statements per request (>= 2)")
    parser.add_argument("--use-env-db", action="store_true", help="use DATABASE_URL")
    parser.add_argument(
        "--asgi", action="store_true", help="an async view through ASGIHandler (see above)"
    )
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1 or args.queries < 2:
        parser.error("--requests and --rounds must be >= 1, --queries >= 2")
    if not args.use_env_db:
        tmp = tempfile.mkdtemp(prefix="bench-middleware-")
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"

    import django
    from django.conf import settings
    from django.core.management import call_command
    from django.urls import path

    django.setup()
    if not args.use_env_db:
        call_command("migrate", verbosity=0)
    from telemetry.models import Series
    from telemetry.services import series_ensure

    if settings.DEBUG:
        raise SystemExit("run with DEBUG off: Django's own query log would distort both sides")
    settings.ALLOWED_HOSTS = ["localhost"]
    settings.ROOT_URLCONF = __name__
    settings.OPTIMIZATION_FLUSH_IN_THREAD = True
    urlpatterns.append(path("bench/", (_async_view if args.asgi else _view)(args.queries)))
    urlpatterns.append(path("bench/empty/", _empty_view))
    for i in range(args.queries):
        series_ensure(name=f"bench.middleware.{i}")

    base = [m for m in settings.MIDDLEWARE if m not in (PROFILER, SYNC_ONLY_PROFILER)]
    run = _run_asgi if args.asgi else _run
    handlers = {
        "without": _handler(base, args.asgi),
        "with": _handler([*base, PROFILER], args.asgi),
    }
    if args.asgi:
        globals()["SyncOnlyProfiler"] = _sync_only_profiler()
        handlers["sync-only"] = _handler([*base, SYNC_ONLY_PROFILER], asgi=True)
    for handler in handlers.values():
        run(handler, 50)  # warm caches, connections, shape cache
    _check_recorded(handlers["with"], run, args.queries)

    rps: dict[str, list[tuple[float, float]]] = {name: [] for name in handlers}
    order = list(handlers)
    for round_no in range(args.rounds):
        # rotate which handler goes first so drift hits all alike
        shift = round_no % len(order)
        for name in order[shift:] + order[:shift]:
            rps[name].append(run(handlers[name], args.requests))
    Series.objects.filter(name__startswith="bench.middleware.").delete()
    if args.use_env_db:
        from optimization.middleware import flush_recorded
        from optimization.models import EndpointProfile, QueryShapeStat

        flush_recorded(before=time.time() + 120)
        Series.objects.filter(labels_key="endpoint=/bench").delete()
        EndpointProfile.objects.filter(endpoint="/bench").delete()
        QueryShapeStat.objects.filter(endpoint="/bench").delete()

    print(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")
    print(
        f"{'ASGI, async view' if args.asgi else 'WSGI, sync view'}: {args.queries} queries "
        f"per request, {args.rounds} rounds x {args.requests}"
    )
    ratios = {}
    rps_without = rps["without"]
    for name in [n for n in handlers if n != "without"]:
        for index, clock in ((0, "wall-clock"), (1, "CPU")):
            a = statistics.median(r[index] for r in rps_without)
            b = statistics.median(r[index] for r in rps[name])
            ratios[(name, clock)] = statistics.median(
                w[index] / wo[index] for w, wo in zip(rps[name], rps_without, strict=True)
            )
            print(
                f"{name + ' profiler,':19} per {clock} second: without {a:8.1f} req/s, "
                f"with {b:8.1f} req/s, ratio {ratios[(name, clock)]:.3f} (median of paired "
                f"rounds), added {(1 / b - 1 / a) * 1e6:7.1f} us/request"
            )
    ratio = ratios[("with", "CPU")]
    if args.asgi:
        alone = _alone_us()
        print(
            "profiler alone around an async view that runs no statement (ASGI, one "
            f"ThreadSensitiveContext per request): without {alone['without']:.1f} us, "
            f"with {alone['with']:.1f} us, sync-only {alone['sync-only']:.1f} us per request"
        )
    wrap_us, record_us, passing_ns = _bookkeeping_us(args.queries)
    print(
        f"profiler bookkeeping alone: {wrap_us:.1f} us wrapping {args.queries} statements "
        f"+ {record_us:.1f} us aggregating = {wrap_us + record_us:.1f} us per request; "
        f"{passing_ns:.0f} ns per statement outside a request"
    )
    return 0 if ratio >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())

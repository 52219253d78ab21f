"""Cost of the optimization profiler: requests/second with and without PerformanceMiddleware.

    .venv/bin/python bench/middleware.py [--requests 400] [--rounds 9] [--queries 10] [--use-env-db]

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
urlpatterns: list = []


def _view(queries: int):
    from django.http import JsonResponse

    from telemetry.models import Series

    def endpoint(request):
        ids = list(Series.objects.order_by("pk").values_list("pk", flat=True)[: queries - 1])
        names = [Series.objects.filter(pk=pk).values_list("name", flat=True).first() for pk in ids]
        return JsonResponse({"names": names})

    return endpoint


def _handler(middleware: list[str]):
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    with override_settings(MIDDLEWARE=middleware):
        return WSGIHandler()


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


def _bookkeeping_us(queries: int, n: int = 20000) -> tuple[float, float]:
    """Microseconds the profiler spends per request outside the database, measured alone:
    the statement wrapper (timing + shape) for ``queries`` statements, then the aggregation."""
    from optimization.engine.sql_shape import sql_shape
    from optimization.recording import PerformanceAggregator

    sqls = [
        f"SELECT name FROM telemetry_series WHERE id = %s /* {i % 2} */" for i in range(queries)
    ]
    recorded: list[tuple[str, float]] = []
    clock = time.perf_counter

    def execute(sql, params, many, context):
        return None

    def wrapper(execute, sql, params, many, context):
        started = clock()
        try:
            return execute(sql, params, many, context)
        finally:
            recorded.append((sql_shape(sql), (clock() - started) * 1000.0))

    started = clock()
    for _ in range(n // queries):
        for sql in sqls:
            wrapper(execute, sql, None, False, None)
    per_query = (clock() - started) / (n // queries * queries) * 1e6
    aggregator, batch = PerformanceAggregator(), recorded[:queries]
    now = time.time()
    started = clock()
    for _ in range(n):
        aggregator.record(endpoint="/bench", ts=now, latency_ms=1.0, status=200, queries=batch)
    per_request = (clock() - started) / n * 1e6
    return per_query * queries, per_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--queries", type=int, default=10, help="statements per request (>= 2)")
    parser.add_argument("--use-env-db", action="store_true", help="use DATABASE_URL")
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
    urlpatterns.append(path("bench/", _view(args.queries)))
    for i in range(args.queries):
        series_ensure(name=f"bench.middleware.{i}")

    base = [m for m in settings.MIDDLEWARE if m != PROFILER]
    without, with_profiler = _handler(base), _handler([*base, PROFILER])
    _run(without, 50), _run(with_profiler, 50)  # warm caches, connections, shape cache

    rps_without, rps_with = [], []
    for round_no in range(args.rounds):
        pair = [(without, rps_without), (with_profiler, rps_with)]
        for handler, out in pair if round_no % 2 == 0 else pair[::-1]:
            out.append(_run(handler, args.requests))
    Series.objects.filter(name__startswith="bench.middleware.").delete()
    if args.use_env_db:
        from optimization.middleware import flush_recorded
        from optimization.models import EndpointProfile, QueryShapeStat

        flush_recorded(before=time.time() + 120)
        Series.objects.filter(labels_key="endpoint=/bench").delete()
        EndpointProfile.objects.filter(endpoint="/bench").delete()
        QueryShapeStat.objects.filter(endpoint="/bench").delete()

    print(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")
    print(f"endpoint: {args.queries} queries per request, {args.rounds} rounds x {args.requests}")
    ratios = {}
    for index, clock in ((0, "wall-clock"), (1, "CPU")):
        a = statistics.median(r[index] for r in rps_without)
        b = statistics.median(r[index] for r in rps_with)
        ratios[clock] = statistics.median(
            w[index] / wo[index] for w, wo in zip(rps_with, rps_without, strict=True)
        )
        print(
            f"per {clock} second: without {a:8.1f} req/s, with {b:8.1f} req/s, "
            f"ratio {ratios[clock]:.3f} (median of paired rounds), "
            f"added {(1 / b - 1 / a) * 1e6:7.1f} us/request"
        )
    ratio = ratios["CPU"]
    wrap_us, record_us = _bookkeeping_us(args.queries)
    print(
        f"profiler bookkeeping alone: {wrap_us:.1f} us wrapping {args.queries} statements "
        f"+ {record_us:.1f} us aggregating = {wrap_us + record_us:.1f} us per request"
    )
    return 0 if ratio >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Ingestion speed: the HTTP endpoint against a raw psycopg COPY of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/p3_bench .venv/bin/python bench/ingest.py \
        [--rows 100000] [--series 50] [--repeats 3]

The endpoint path is the real one: an orjson-serialised body posted through Django's
full stack (middleware, API-key authentication, role check, parser, validation, series
get-or-create, binary COPY into a staging table, INSERT … ON CONFLICT, commit). The
baselines COPY the same (series_id, ts, value) rows straight into a table of the same
shape (``LIKE telemetry_sample INCLUDING ALL`` plus its foreign key to the series: same
primary key, unique index and deferred FK check),
once with psycopg's ``write_row`` (what most code does) and once with a prebuilt binary
buffer (the fastest COPY there is). Each figure is the median of ``--repeats`` runs on
fresh timestamps; the bench series are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phase3.settings")


def _utc(ts_us: int):
    from datetime import UTC, datetime, timedelta

    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("bench/ingest.py needs DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    if not 1 <= args.rows <= 100_000:
        print("--rows must be between 1 and 100000 (one batch)", file=sys.stderr)
        return 2

    import django

    django.setup()
    import orjson
    import psycopg
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client

    from phase3.keys import api_key_create
    from telemetry.models import Sample, Series
    from telemetry.pgcopy import samples_copy_payload
    from telemetry.services import ingest_bounds, samples_write_batch
    from telemetry.validation import gc_paused, validate_samples

    call_command("migrate", verbosity=0)
    run = uuid.uuid4().hex[:8]
    key = api_key_create(name=f"bench-ingest-{run}", role="operator")
    client = Client(HTTP_X_ADMIN_KEY=key.raw)
    names = [f"bench.{run}.metric{i % 10}" for i in range(args.series)]
    labels = [{"host": f"h{i}", "region": ("eu", "us")[i % 2]} for i in range(args.series)]
    rng = np.random.default_rng(0)
    sample_table = Sample._meta.db_table
    raw_table = f"bench_raw_{run}"

    def body_for(repeat: int) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
        per_series = -(-args.rows // args.series)
        offset = time.time() - 86_400 * 5 - repeat * 7 * 86_400 / args.repeats
        series_idx = np.arange(args.rows) % args.series
        ts = np.round(offset + (np.arange(args.rows) // args.series) * (86_400 / per_series), 3)
        values = np.round(rng.normal(100, 15, args.rows), 4)
        rows = [
            {"series": names[s], "labels": labels[s], "ts": t, "value": v}
            for s, t, v in zip(series_idx.tolist(), ts.tolist(), values.tolist(), strict=True)
        ]
        return orjson.dumps({"samples": rows}), series_idx, ts, values

    # Warm-up: the first request imports the URLconf and every app; that is not ingestion.
    warm = {"samples": [{"series": f"bench.{run}.warmup", "ts": time.time() - 60, "value": 1.0}]}
    client.post("/admin/api/phase3/telemetry/samples", orjson.dumps(warm), "application/json")

    endpoint, phases = [], {"parse": [], "validate": [], "write": []}
    raw_rows, raw_binary = [], []
    dsn = os.environ["DATABASE_URL"]
    with psycopg.connect(dsn, autocommit=True) as raw:
        series_table = Series._meta.db_table
        for table in (raw_table, f"{raw_table}_b"):
            raw.execute(f"CREATE TABLE {table} (LIKE {sample_table} INCLUDING ALL)")
            # LIKE copies no foreign key; Django's (checked at commit) is part of the shape.
            raw.execute(
                f"ALTER TABLE {table} ADD FOREIGN KEY (series_id) REFERENCES {series_table} (id) "
                "DEFERRABLE INITIALLY DEFERRED"
            )
        try:
            for repeat in range(args.repeats):
                body, series_idx, ts, values = body_for(repeat)
                started = time.perf_counter()
                response = client.post(
                    "/admin/api/phase3/telemetry/samples", body, content_type="application/json"
                )
                endpoint.append(time.perf_counter() - started)
                if response.status_code != 200 or response.json()["written"] != args.rows:
                    print(f"endpoint failed: {response.status_code} {response.content[:300]!r}")
                    return 1
                ids = dict(
                    Series.objects.filter(name__startswith=f"bench.{run}.").values_list(
                        "labels_key", "id"
                    )
                )
                sid = np.array(
                    [ids[f"host=h{i},region={('eu', 'us')[i % 2]}"] for i in range(args.series)]
                )
                series_ids = sid[series_idx]
                ts_us = np.round(ts * 1e6).astype(np.int64)

                stamps = [_utc(t) for t in ts_us.tolist()]
                py_rows = list(zip(series_ids.tolist(), stamps, values.tolist(), strict=True))
                started = time.perf_counter()
                with (
                    raw.transaction(),
                    raw.cursor() as cur,
                    cur.copy(f"COPY {raw_table} (series_id, ts, value) FROM STDIN") as copy,
                ):
                    for row in py_rows:
                        copy.write_row(row)
                raw_rows.append(time.perf_counter() - started)

                started = time.perf_counter()
                with (
                    raw.transaction(),
                    raw.cursor() as cur,
                    cur.copy(
                        f"COPY {raw_table}_b (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.write(samples_copy_payload(series_ids, ts_us, values))
                raw_binary.append(time.perf_counter() - started)

                # Where the endpoint's time goes, on a re-send of the same batch (no rows written).
                started = time.perf_counter()
                with gc_paused():
                    payload = orjson.loads(body)
                    phases["parse"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    batch = validate_samples(payload, bounds=ingest_bounds())
                    phases["validate"].append(time.perf_counter() - started)
                started = time.perf_counter()
                with transaction.atomic():
                    samples_write_batch(batch=batch)
                phases["write"].append(time.perf_counter() - started)
        finally:
            raw.execute(f"DROP TABLE IF EXISTS {raw_table}")
            raw.execute(f"DROP TABLE IF EXISTS {raw_table}_b")
            Series.objects.filter(name__startswith=f"bench.{run}.").delete()
            key.api_key.delete()
            connection.close()

    def rate(seconds: list[float]) -> float:
        return args.rows / statistics.median(seconds)

    ep, rr, rb = rate(endpoint), rate(raw_rows), rate(raw_binary)
    print(f"rows per batch: {args.rows}, series: {args.series}, repeats: {args.repeats} (medians)")
    print(f"HTTP endpoint (full Django stack) : {ep:>10,.0f} samples/s")
    print(f"raw COPY, psycopg write_row       : {rr:>10,.0f} samples/s   ratio {ep / rr:.2f}")
    print(f"raw COPY, binary buffer           : {rb:>10,.0f} samples/s   ratio {ep / rb:.2f}")
    print(
        "endpoint phases on a re-send (ms): "
        + ", ".join(f"{k} {statistics.median(v) * 1000:.0f}" for k, v in phases.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Personalization: offline evaluation of the engine and speed of config resolution.

    .venv/bin/python bench/personalization.py engine     # personas + statistics, no database
    .venv/bin/python bench/personalization.py resolve    # resolutions/s in process and over HTTP
    .venv/bin/python bench/personalization.py results    # one results recomputation, seconds
    .venv/bin/python bench/personalization.py            # all three

``engine`` measures, on data whose truth is known:
  - persona accuracy, ECE and Brier (raw and temperature-calibrated, calibrated on
    other users than those measured) on simulated users at two noise levels and on
    windows of the demo generator (``telemetry.demo_world``, the same code that
    seeds the demo database);
  - the persona mixture configuration against the alternative it replaced;
  - the false-positive rate of the sequential test vs naive daily peeking in many
    A/A experiments, and the coverage of the always-valid interval with a real effect.

``resolve`` needs the database (DATABASE_URL / REDIS_URL as for the server). It
creates ``bench-*`` profiles and one running experiment, measures
``services.config_resolve`` in process (cache hit and cache miss) and the HTTP
endpoint through a real socket next to two bare endpoints (plain Django; DRF with
the same API-key authentication) served by the same threaded server in the same
run, then deletes what it created.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from personalization.engine.features import EventArrays, extract_user_features
from personalization.engine.personas import PersonaModel
from personalization.engine.sequential import (
    SequentialState,
    sequential_look,
    simulate_aa_experiments,
)
from personalization.engine.simulate import simulate_users


# --------------------------------------------------------------------------- engine
def _demo_window(end: float, days: int, users: int, seed: int):
    from telemetry.demo_world import build_world

    world = build_world(end=end, days=days, users=users, seed=seed, step_seconds=300)
    ev = world.events
    events = EventArrays(
        np.array(ev.user_id, dtype=object), np.array(ev.name, dtype=object), np.array(ev.ts),
        np.array(ev.session_id, dtype=object), ev.properties,
    )  # fmt: skip
    return extract_user_features(events), world.user_kinds


def _split(kinds: dict[str, str], seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    calib, test = {}, {}
    for user, kind in kinds.items():
        (calib if rng.random() < 0.5 else test)[user] = kind
    return calib, test


def _report_row(label: str, rows: list) -> None:
    arr = np.array(rows, dtype=float)
    mean = np.nanmean(arr, axis=0)
    print(f"  {label:<34} users={mean[0]:6.0f} acc={mean[1]:.3f} ECE raw={mean[2]:.3f} "
          f"cal={mean[3]:.3f}  Brier raw={mean[4]:.3f} cal={mean[5]:.3f}  (n={len(rows)})")  # fmt: skip


def bench_personas(seeds: int) -> None:
    print("Personas: accuracy and calibration on users of known kind")
    for noise in (0.45, 0.8):
        rows = []
        for s in range(seeds):
            train, calib, test = (simulate_users(60, noise=noise, seed=1000 * s + k, n_casual=10)
                                  for k in range(3))  # fmt: skip
            model = PersonaModel().fit(extract_user_features(train.events))
            model.calibrate(extract_user_features(calib.events), calib.kinds)
            r = model.evaluate(extract_user_features(test.events), test.kinds)
            rows.append([r.n_users, r.accuracy, r.ece_uncalibrated, r.ece,
                         r.brier_uncalibrated, r.brier])  # fmt: skip
        _report_row(f"simulated, noise {noise}", rows)
    for days, users in ((7, 200), (28, 400)):
        rows = []
        for s in range(seeds):
            features, kinds = _demo_window(1.795e9 + s * 5417.0, days, users, seed=1 + s)
            calib, test = _split(kinds, seed=s)
            model = PersonaModel().fit(features)
            model.calibrate(features, calib)
            r = model.evaluate(features, test)
            rows.append([r.n_users, r.accuracy, r.ece_uncalibrated, r.ece,
                         r.brier_uncalibrated, r.brier])  # fmt: skip
        _report_row(f"demo generator, {days} d x {users} users", rows)


def bench_mixture_choice(windows: int) -> None:
    print("Mixture configuration on demo windows (7 days, 200 users): accuracy per window")
    configs = {
        "full cov, random starts (before)": {"covariance_type": "full",
                                             "seed_from_definitions": False},
        "diag cov, definition starts (now)": {},
    }  # fmt: skip
    data = [_demo_window(1.795e9 + k * 5417.0, 7, 200, seed=1) for k in range(windows)]
    for label, kwargs in configs.items():
        acc = [PersonaModel(**kwargs).fit(f).evaluate(f, k).accuracy for f, k in data]
        print(f"  {label:<36} mean={np.mean(acc):.3f} min={np.min(acc):.3f} "
              f"windows<0.9: {sum(a < 0.9 for a in acc)}/{len(acc)}")  # fmt: skip


def bench_sequential(n_experiments: int) -> None:
    print("A/A experiments checked daily for 28 days (alpha 0.05)")
    for users_per_day, rate in ((200, 0.10), (1000, 0.03), (60, 0.25)):
        sim = simulate_aa_experiments(n_experiments=n_experiments, days=28,
                                      users_per_day=users_per_day, conversion_rate=rate, seed=7)  # fmt: skip
        se = np.sqrt(0.05 * 0.95 / n_experiments)
        print(f"  {users_per_day:>5} users/day, rate {rate:.2f}: sequential FPR="
              f"{sim.sequential_false_positive_rate:.4f} (alpha + 2 s.e. = {0.05 + 2 * se:.4f}), "
              f"naive daily peeking={sim.naive_peeking_false_positive_rate:.4f}, "
              f"single look={sim.single_look_false_positive_rate:.4f}")  # fmt: skip
    rng = np.random.default_rng(8)
    misses, detected, n = 0, 0, 1000
    for _ in range(n):
        state = SequentialState()
        a, b = rng.normal(10, 5, size=(28, 100)), rng.normal(10.5, 5, size=(28, 100))
        for day in range(1, 29):
            xa, xb = a[:day].ravel(), b[:day].ravel()
            var = xa.var(ddof=1) / xa.size + xb.var(ddof=1) / xb.size
            look = sequential_look(xb.mean() - xa.mean(), var, 2 * xa.size, n_planned=5600,
                                   previous=state)  # fmt: skip
            state = look.state
        misses += not look.ci.contains(0.5)
        detected += look.significant
    print(
        f"  true effect 0.1 sd, 28 daily looks: always-valid CI missed the truth in "
        f"{misses / n:.4f} of runs (<= 0.05 expected); effect detected in {detected / n:.3f}"
    )


# --------------------------------------------------------------------------- resolve
def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phase3.settings")
    # Own cache namespace: a test run sharing the Redis database must not see bench entries.
    os.environ.setdefault("PHASE3_CACHE_PREFIX", "phase3-bench-personalization")
    import django

    django.setup()


def _rate(fn, seconds: float) -> tuple[float, int]:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(n)
        n += 1
    return n / (time.perf_counter() - start), n


def bench_resolve(users: int, seconds: float) -> None:
    _setup_django()
    import requests
    from django.conf import settings
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application
    from django.db import transaction
    from django.http import HttpResponse
    from django.urls import include, path
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from personalization import services
    from personalization.models import Experiment, UserProfile
    from phase3.keys import api_key_create
    from phase3.models import ApiKey

    personas = ["explorer", "optimizer", "achiever", "socializer", ""]
    ids = [f"bench-{i}" for i in range(users)]
    UserProfile.objects.filter(user_id__startswith="bench-").delete()
    Experiment.objects.filter(key="bench-exp").delete()
    UserProfile.objects.bulk_create(
        [
            UserProfile(
                user_id=u, persona=personas[i % 5], persona_confidence=0.9 if i % 5 < 4 else None
            )
            for i, u in enumerate(ids)
        ]
    )
    Experiment.objects.create(key="bench-exp", name="bench", status="running",
                              variants=[{"name": "control"}, {"name": "treatment"}],
                              primary_metric={"kind": "conversion", "event": "purchase"})  # fmt: skip
    issued = api_key_create(name="bench-personalization", role="viewer")
    try:
        print(f"Config resolution ({users} users, {settings.CACHES['default']['BACKEND']}, "
              f"{settings.DATABASES['default']['ENGINE']})")  # fmt: skip

        def miss(n: int) -> None:
            with transaction.atomic():
                services.config_resolve(user_id=ids[n % users], use_cache=False)

        def hit(n: int) -> None:
            services.config_resolve(user_id=ids[n % users])

        for n in range(users):  # warm every user's entry (and record exposures once)
            hit(n)
        for label, fn in (("cache miss", miss), ("cache hit", hit)):
            rate, n = _rate(fn, seconds)
            print(f"  in process, {label:<10} : {rate:8.0f} resolutions/s ({n})")

        class BareDRF(APIView):
            def get(self, request):
                return Response({"ok": True})

        module = type(sys)("bench_personalization_urls")
        module.urlpatterns = [
            path("bench/bare-django", lambda request: HttpResponse(b'{"ok": true}')),
            path("bench/bare-drf", BareDRF.as_view()),
            path("", include(settings.ROOT_URLCONF)),
        ]
        sys.modules[module.__name__] = module
        settings.ROOT_URLCONF = module.__name__

        class QuietHandler(WSGIRequestHandler):
            disable_nagle_algorithm = True  # else keep-alive replies wait ~40 ms for an ACK

            def log_message(self, *args) -> None:
                pass

        server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
        server.set_app(get_wsgi_application())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        session = requests.Session()
        session.headers["X-Admin-Key"] = issued.raw
        assert session.get(f"{base}/admin/api/phase3/personalization/users/bench-1/config"
                           ).status_code == 200  # fmt: skip

        def get(url: str):
            def call(n: int) -> None:
                response = session.get(url.format(user=ids[n % users]))
                response.raise_for_status()

            return call

        print(f"  over HTTP (keep-alive, one client, {base}):")
        config_url = base + "/admin/api/phase3/personalization/users/{user}/config"
        for label, url in (("bare Django view", base + "/bench/bare-django"),
                           ("bare DRF view + key auth", base + "/bench/bare-drf"),
                           ("config endpoint (cached)", config_url)):  # fmt: skip
            rate, n = _rate(get(url), seconds)
            print(f"    {label:<26} {rate:8.0f} requests/s ({n})")
        server.shutdown()
    finally:
        UserProfile.objects.filter(user_id__startswith="bench-").delete()
        Experiment.objects.filter(key="bench-exp").delete()
        ApiKey.objects.filter(pk=issued.api_key.pk).delete()


# --------------------------------------------------------------------------- results
def bench_results(users: int, days: int, repeats: int) -> None:
    """Time one experiment's results recomputation on a synthetic history.

    ``users`` exposed users (half control) over the last ``days`` days and as many users
    never exposed, each with ``page_view`` events every day of the last ``days + 14`` days
    (a guardrail counted per user) and a ``purchase`` now and then (the primary metric, a
    mean of ``amount``): CUPED reads the 14 days before each exposure, so this is what the
    extra window costs. Creates and then deletes ``bench-results*`` rows.
    """
    _setup_django()
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from personalization import services
    from personalization.models import Experiment, Exposure
    from telemetry.bulk import insert_events
    from telemetry.models import Event

    rng = np.random.default_rng(0)
    now = timezone.now().replace(microsecond=0)
    start = now - timedelta(days=days)
    Experiment.objects.filter(key="bench-results").delete()
    Event.objects.filter(user_id__startswith="bench-results-").delete()
    exp = Experiment.objects.create(
        key="bench-results", name="bench", status="running", starts_at=start,
        variants=[{"name": "control"}, {"name": "treatment"}],
        primary_metric={"kind": "mean", "event": "purchase", "property": "amount"},
        guardrail_metrics=[{"kind": "mean", "event": "page_view"}],
    )  # fmt: skip
    try:
        exposed = [f"bench-results-{i}" for i in range(users)]
        others = [f"bench-results-x{i}" for i in range(users)]
        Exposure.objects.bulk_create(
            [
                Exposure(experiment=exp, user_id=u, variant=("control", "treatment")[i % 2],
                         exposed_at=start + timedelta(seconds=float(rng.uniform(0, days * 86400))))
                for i, u in enumerate(exposed)
            ],
            batch_size=5000,
        )  # fmt: skip
        rows = []
        for u in exposed + others:
            for d in range(days + 14):
                ts = now - timedelta(days=d, seconds=float(rng.uniform(0, 86400)))
                rows.append((u, "page_view", ts, "", {"feature": "f"}, None))
                if rng.random() < 0.1:
                    rows.append((u, "purchase", ts, "", {"amount": float(rng.gamma(2, 20))}, None))
            if len(rows) > 200_000:
                with transaction.atomic():  # the COPY's staging table empties at commit
                    insert_events(rows)
                rows = []
        with transaction.atomic():
            insert_events(rows)
        count = Event.objects.filter(user_id__startswith="bench-results-").count()
        timings = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            services.experiment_results_recompute(experiment_id=exp.pk)
            timings.append(time.perf_counter() - t0)
        print(
            f"Results recomputation ({users:,} exposed users over {days} days, {count:,} "
            f"events of which those of the last {days + 14} days; 2 metrics): "
            f"best {min(timings):.2f} s, median {float(np.median(timings)):.2f} s "
            f"of {repeats}"
        )
    finally:
        Experiment.objects.filter(key="bench-results").delete()
        Event.objects.filter(user_id__startswith="bench-results-").delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "section", nargs="?", choices=["engine", "resolve", "results", "all"], default="all"
    )
    parser.add_argument("--seeds", type=int, default=5, help="repetitions of each evaluation")
    parser.add_argument("--aa", type=int, default=4000, help="A/A experiments per setting")
    parser.add_argument("--users", type=int, default=2000, help="profiles for the resolve bench")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each rate")
    parser.add_argument("--exposed", type=int, default=5000, help="exposed users (results)")
    parser.add_argument("--days", type=int, default=14, help="days the experiment ran (results)")
    parser.add_argument("--repeats", type=int, default=3, help="recomputations timed (results)")
    args = parser.parse_args()
    if args.section in ("engine", "all"):
        bench_personas(args.seeds)
        bench_mixture_choice(16)
        bench_sequential(args.aa)
    if args.section in ("resolve", "all"):
        bench_resolve(args.users, args.seconds)
    if args.section in ("results", "all"):
        bench_results(args.exposed, args.days, args.repeats)


if __name__ == "__main__":
    main()

"""Services against the database: profiles flush, baselines, analysis, lifecycle, verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.utils import timezone

from optimization import selectors, services
from optimization.engine.sql_shape import sql_shape
from optimization.models import (
    AnalysisReport,
    Baseline,
    EndpointProfile,
    HealthSnapshot,
    QueryShapeStat,
    Recommendation,
)
from optimization.recording import PerformanceAggregator
from telemetry import selectors as telemetry
from telemetry.models import DemoIncident
from tests.locking import OtherConnection

from .factories import grid, small_world, write

pytestmark = pytest.mark.django_db


# --- profiler flush ---------------------------------------------------------------------------


def _requests(aggregator, ts, n, *, latency, status=200, loop=0):
    lookup = sql_shape("SELECT * FROM author WHERE id = 1")
    for _ in range(n):
        queries = [(sql_shape("SELECT * FROM book"), 3.0)] + [(lookup, 12.0)] * loop
        aggregator.record(endpoint="/books", ts=ts, latency_ms=latency, status=status,
                          queries=queries)  # fmt: skip


def test_flush_writes_minute_series_and_hourly_shapes_and_merges_a_second_process():
    minute = np.floor(timezone.now().timestamp() / 3600) * 3600 - 3600 + 120
    first, second = PerformanceAggregator(), PerformanceAggregator()
    _requests(first, minute, 10, latency=100, loop=6)
    _requests(second, minute, 30, latency=300, status=500)
    services.performance_flush(buckets=first.drain())
    services.performance_flush(buckets=second.drain())

    def value(name):
        series = telemetry.series_get(name, {"endpoint": "/books"})
        return telemetry.series_values(series.pk)[1]

    assert value("http.requests.rate").tolist() == [40.0]
    assert value("http.errors.ratio")[0] == pytest.approx(30 / 40)
    assert value("db.queries.per_request")[0] == pytest.approx((10 * 7 + 30 * 1) / 40)
    assert value("http.latency.p95")[0] == pytest.approx(300)
    profile = EndpointProfile.objects.get(endpoint="/books")
    assert profile.requests == 40 and profile.errors == 30
    loop_shape = QueryShapeStat.objects.get(shape__contains="author")
    assert loop_shape.executions == 60 and loop_shape.n_plus_one_requests == 10
    assert loop_shape.repeats_sum == 60 and loop_shape.max_ms == 12.0


@pytest.mark.django_db(transaction=True)
def test_flushes_of_two_processes_at_once_lose_neither_share(postgres, monkeypatch):
    # Each flush read the minute's sample, added its share and wrote the sum back; two at
    # once both read the same old value and the later write dropped the other's requests.
    from optimization.services import profiles
    from telemetry.models import Sample

    profiles._series_for("/books", {})  # the endpoint's series exist from earlier minutes
    minute = np.floor(timezone.now().timestamp() / 3600) * 3600 - 3600 + 120
    first, second = PerformanceAggregator(), PerformanceAggregator()
    _requests(first, minute, 10, latency=100)
    _requests(second, minute, 30, latency=300, status=500)
    thread = OtherConnection(lambda: services.performance_flush(buckets=second.drain()))
    # This flush has read the minute's samples and is about to write the merged values.
    thread.start_at(monkeypatch, Sample.objects, "bulk_create")
    services.performance_flush(buckets=first.drain())
    thread.join()
    assert isinstance(thread.outcome[0], dict), thread.outcome

    def value(name):
        series = telemetry.series_get(name, {"endpoint": "/books"})
        return telemetry.series_values(series.pk)[1]

    assert value("http.requests.rate").tolist() == [40.0]
    assert value("http.errors.ratio")[0] == pytest.approx(30 / 40)
    assert value("http.latency.p95")[0] == pytest.approx(300)
    assert EndpointProfile.objects.get(endpoint="/books").requests == 40


def test_a_failed_flush_writes_nothing_and_keeps_the_figures(monkeypatch):
    from optimization.services import profiles

    aggregator = PerformanceAggregator()
    _requests(aggregator, timezone.now().timestamp() - 600, 5, latency=50, loop=6)
    buckets = aggregator.drain()

    def boom(_buckets):
        raise RuntimeError("disk full")

    monkeypatch.setattr(profiles, "_write_shapes", boom)
    with pytest.raises(RuntimeError):
        services.performance_flush(buckets=buckets)
    assert not EndpointProfile.objects.exists()
    assert telemetry.series_get("http.requests.rate", {"endpoint": "/books"}) is None
    aggregator.restore(buckets)
    assert aggregator.drain()[0].requests == 5


# --- baselines --------------------------------------------------------------------------------


def test_baselines_are_idempotent_and_follow_the_data():
    ts = grid(14)
    hour = (ts // 3600) % 24
    series = write("http.latency.p95", ts, 100 + 50 * (hour >= 12), {"endpoint": "/x"})
    services.baselines_recompute()
    row = Baseline.objects.get(series=series)
    count = Baseline.objects.count()  # other series (a shared demo world) may have baselines too
    assert max(row.median) == pytest.approx(150) and min(row.median) == pytest.approx(100)
    services.baselines_recompute()
    assert Baseline.objects.count() == count
    assert Baseline.objects.get(series=series).median == row.median


# --- analysis ---------------------------------------------------------------------------------


def test_analysis_finds_the_n_plus_one_endpoint_and_is_idempotent_within_the_hour():
    small_world()
    services.baselines_recompute()
    report = services.analysis_run()
    flagged = set(
        Recommendation.objects.filter(category="n_plus_one").values_list("endpoint", flat=True)
    )
    assert "/r" in flagged and "/f" not in flagged
    assert report.health is not None and 0 <= report.health.score <= 100
    assert {"/r", "/f"} <= {row["endpoint"] for row in report.bottlenecks["endpoints"]}
    services.analysis_run()
    assert AnalysisReport.objects.count() == 1 and HealthSnapshot.objects.count() == 1
    assert Recommendation.objects.filter(category="n_plus_one", endpoint="/r").count() == 1
    assert Recommendation.objects.get(category="n_plus_one", endpoint="/r").times_seen == 2


def test_health_score_drops_when_latency_breaks_the_slo():
    small_world(seed=1)
    healthy = services.analysis_compute().health.score
    HealthSnapshot.objects.all().delete()
    latency = telemetry.series_get("http.latency.p95")
    recent = grid(0.25)  # overwrite the last 6 hours with 2 s latency
    from telemetry.models import Sample

    Sample.objects.filter(series=latency, ts__gte=telemetry.to_datetime(recent[0])).delete()
    write("http.latency.p95", recent, 2000.0)
    broken = services.analysis_compute().health
    assert broken.score < healthy
    assert broken.breakdown()["latency"]["points_lost"] > 0


@pytest.mark.usefixtures("empty_telemetry")  # the session demo world has these series
def test_health_scores_an_installation_fed_by_the_profiler_alone():
    """The middleware writes per-endpoint series only: the score is built from them (requests
    weigh each endpoint) rather than missing, and it drops when the busy endpoint is slow."""
    now = timezone.now()
    base = np.floor(now.timestamp() / 60) * 60 - 6 * 3600

    def traffic(latency_ms: float, *, rare_errors: bool) -> None:
        aggregator = PerformanceAggregator(max_pending_minutes=24 * 60)  # six hours in one go
        for minute in range(0, 6 * 60, 5):
            ts = base + minute * 60
            for _ in range(20):
                aggregator.record(endpoint="/busy", ts=ts, latency_ms=latency_ms, status=200,
                                  queries=[])  # fmt: skip
            failing = rare_errors and minute % 60 == 0
            for _ in range(2):
                aggregator.record(endpoint="/rare", ts=ts, latency_ms=50.0,
                                  status=500 if failing else 200, queries=[])  # fmt: skip
        services.performance_flush(buckets=aggregator.drain())

    traffic(120.0, rare_errors=True)
    assert telemetry.series_get("http.latency.p95") is None  # no overall series at all
    healthy = services.analysis_compute(now=now).health
    assert healthy is not None
    parts = healthy.breakdown()
    assert parts["latency"]["points_lost"] == 0
    # failed requests over all requests: 6 hours x 2 failures against 72 x 22 requests
    assert parts["errors"]["detail"]["failed_share"] == pytest.approx(12 / (72 * 22))
    assert parts["errors"]["points_lost"] > 0

    traffic(2000.0, rare_errors=False)  # a second process: the busy endpoint's p95 is 2 s
    broken = services.analysis_compute(now=now).health
    assert broken.score < healthy.score
    assert broken.breakdown()["latency"]["points_lost"] > 0


@pytest.mark.usefixtures("empty_telemetry")  # the session demo world has routed endpoints
def test_a_scanners_404_flood_is_shown_but_never_a_recommendation_or_a_health_failure():
    """Unmatched requests (pooled as ``<unresolved>``) run the session lookup in a loop and
    outweigh the routes, enough for an N+1, a slow query and a hotspot; none is recommended,
    the routes keep their shares, and the 404s neither fail nor dilute the error budget."""
    now = timezone.now()
    base = np.floor(now.timestamp() / 60) * 60 - 6 * 3600
    session = sql_shape("SELECT * FROM django_session WHERE session_key = 'x'")
    aggregator = PerformanceAggregator(max_pending_minutes=24 * 60)
    for minute in range(0, 6 * 60, 5):
        ts = base + minute * 60
        for i in range(20):
            aggregator.record(endpoint="/books", ts=ts, latency_ms=80.0,
                              status=500 if i == 0 else 200, queries=[])  # fmt: skip
        for _ in range(200):
            aggregator.record(endpoint="<unresolved>", ts=ts, latency_ms=700.0, status=404,
                              queries=[(session, 110.0)] * 6)  # fmt: skip
    services.performance_flush(buckets=aggregator.drain())
    result = services.analysis_compute(now=now)
    assert [d for d in result.drafts if d.endpoint == "<unresolved>"] == []
    bottlenecks = result.bottlenecks
    assert [row["endpoint"] for row in bottlenecks["endpoints"]] == ["/books"]
    assert bottlenecks["endpoints"][0]["time_share"] == pytest.approx(1.0)
    for kind in ("n_plus_one", "slow_queries", "regressions"):
        assert "<unresolved>" not in {row["endpoint"] for row in bottlenecks[kind]}
    # its figures stay visible: 72 intervals x 200 requests, most of the server's time
    assert bottlenecks["unresolved"]["requests"] == 72 * 200
    assert bottlenecks["unresolved"]["share_of_all_time"] > 0.9
    # 1 of the 20 routed requests failed: 5 %, not 5 % diluted by 200 404s
    errors = result.health.breakdown()["errors"]["detail"]
    assert errors["failed_share"] == pytest.approx(1 / 20)


def test_dismissed_recommendation_stays_dismissed_while_its_cause_persists():
    small_world(seed=2)
    services.analysis_run()
    rec = Recommendation.objects.get(category="n_plus_one", endpoint="/r")
    services.recommendation_dismiss(recommendation_id=rec.pk, actor="ops", reason="known")
    services.analysis_run(now=timezone.now() + timedelta(minutes=61))
    states = Recommendation.objects.filter(category="n_plus_one", endpoint="/r")
    assert list(states.values_list("state", flat=True)) == ["dismissed"]


def test_a_recommendation_another_run_inserted_first_is_refreshed_not_fatal(monkeypatch):
    # Two overlapping runs (the schedule and "run now") found no row for a new key and both
    # inserted it: the unique constraint failed the later run, snapshot and report included.
    from optimization.services import recommendations

    small_world(seed=3)
    metric_series = recommendations._metric_series
    raced: set[str] = set()

    def other_run_inserts_first(draft):
        # This run found no row for the key and is about to insert one.
        if draft.dedup_key not in raced:
            raced.add(draft.dedup_key)
            at = timezone.now()
            Recommendation.objects.create(
                dedup_key=draft.dedup_key, first_seen_at=at, last_seen_at=at,
                state_changed_at=at, **recommendations._fields(draft),
            )  # fmt: skip
        return metric_series(draft)

    monkeypatch.setattr(recommendations, "_metric_series", other_run_inserts_first)
    report = services.analysis_run()
    assert raced and report.recommendations_created == 0
    assert HealthSnapshot.objects.filter(pk=report.health_id).exists()
    for key in raced:
        (row,) = Recommendation.objects.filter(dedup_key=key)
        assert row.state == "active" and row.times_seen == 2


def test_analysis_on_the_demo_world_points_at_the_injected_causes(demo_world):
    services.baselines_recompute()
    report = services.analysis_run()
    n_plus_one = {f["endpoint"] for f in report.bottlenecks["n_plus_one"]}
    assert "/api/reports" in n_plus_one  # the demo's documented N+1
    linked = {s["resource"] for s in report.bottlenecks["saturation"] if s["significant"]}
    causes = set(
        DemoIncident.objects.filter(kind__in=["cpu", "db_connections"]).values_list(
            "cause_series__name", flat=True
        )
    )
    for cause in causes:  # e.g. db.connections.active -> db.connections.utilization
        assert any(r.rsplit(".", 1)[0] == cause.rsplit(".", 1)[0] for r in linked), cause
    assert linked <= {"system.cpu.utilization", "db.connections.utilization"}


# --- lifecycle and verification ---------------------------------------------------------------


def _applied_recommendation(*, improvement_ms: float) -> Recommendation:
    """A claimed N+1 recommendation on db.time.ms{/v}, applied 3 days ago; after the change
    the metric drops by ``improvement_ms``."""
    now = timezone.now()
    ts = grid(31)
    applied = now - timedelta(days=3)
    rng = np.random.default_rng(5)
    hour = (ts // 3600) % 24
    values = 100 + 20 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 3, ts.size)
    values[ts >= applied.timestamp()] -= improvement_ms
    series = write("db.time.ms", ts, values, {"endpoint": "/v"})
    write("http.requests.rate", ts, 60.0, {"endpoint": "/v"})
    rec = Recommendation.objects.create(
        dedup_key="k", category="n_plus_one", title="t", endpoint="/v", confidence=0.8,
        confidence_explanation="e", predicted_ms_saved_per_day=1e6,
        predicted_db_ms_saved_per_day=1e6, complexity="low", risk="low", rollback_plan="r",
        metric_series=series, first_seen_at=now - timedelta(days=7),
    )  # fmt: skip
    services.recommendation_claim(recommendation_id=rec.pk, actor="ops")
    services.recommendation_mark_applied(recommendation_id=rec.pk, actor="ops", applied_at=applied)
    return rec


def test_verification_records_the_realised_saving_of_a_working_change():
    rec = _applied_recommendation(improvement_ms=30)
    counts = services.recommendations_verify()
    rec.refresh_from_db()
    assert counts["succeeded"] == 1 and rec.state == "succeeded"
    per_request = rec.realised["improvement_per_request"]
    assert per_request == pytest.approx(30, abs=3)
    assert rec.realised_ms_saved_per_day == pytest.approx(per_request * 60 * 1440, rel=0.05)
    section = selectors.overview_section()
    assert section["success_rate"] == 1.0 and section["verified"] == 1
    assert section["realised_ms_saved_per_day_verified"] == pytest.approx(
        rec.realised_ms_saved_per_day
    )


def test_verification_fails_a_change_that_did_nothing_and_calibration_learns_from_it():
    rec = _applied_recommendation(improvement_ms=0)
    services.recommendations_verify()
    rec.refresh_from_db()
    assert rec.state == "failed"
    from optimization.services.analysis import calibration_current

    calibration = calibration_current()["n_plus_one"]
    assert calibration.outcomes == 1 and calibration.success_rate == 0
    assert calibration.impact_factor < 1
    assert calibration.calibrate_confidence(0.8) < 0.8


def test_a_rolled_back_success_no_longer_counts_its_saving():
    rec = _applied_recommendation(improvement_ms=30)
    services.recommendations_verify()
    rec.refresh_from_db()
    measured = rec.realised_ms_saved_per_day
    assert rec.state == "succeeded" and measured > 0
    services.recommendation_rollback(recommendation_id=rec.pk, actor="ops", reason="broke it")
    rec.refresh_from_db()
    # the change was reverted: nothing is saved any more; the measurement stays on record
    assert rec.realised_ms_saved_per_day is None
    assert rec.realised["ms_saved_per_day_before_rollback"] == measured
    section = selectors.overview_section()
    assert not section["realised_ms_saved_per_day_verified"]
    assert section["verified"] == 1 and section["success_rate"] == 0.0
    from optimization.services.analysis import calibration_current

    calibration = calibration_current()["n_plus_one"]  # a failure, not a 3x saving
    assert calibration.success_rate == 0 and calibration.impact_factor == 1.0


def test_a_rollback_before_verification_counts_as_a_failure():
    rec = _applied_recommendation(improvement_ms=0)
    services.recommendation_rollback(recommendation_id=rec.pk, actor="ops", reason="worse")
    section = selectors.overview_section()
    assert section["verified"] == 1 and section["success_rate"] == 0.0
    from optimization.services.analysis import calibration_current

    calibration = calibration_current()["n_plus_one"]
    assert calibration.outcomes == 1 and calibration.calibrate_confidence(0.8) < 0.8
    assert services.recommendations_verify()["checked"] == 0  # nothing left to verify


def test_applied_at_beyond_the_verification_window_is_refused():
    # the verifier gives up 14 days after a change; year 1 overflowed its baseline window
    now = timezone.now()
    rec = Recommendation.objects.create(
        dedup_key="early", category="n_plus_one", title="t", endpoint="/v", confidence=0.5,
        confidence_explanation="e", predicted_ms_saved_per_day=1.0,
        predicted_db_ms_saved_per_day=1.0, complexity="low", risk="low", rollback_plan="r",
        first_seen_at=now - timedelta(days=30),
    )  # fmt: skip
    for applied_at in (
        now - services.APPLIED_AT_MAX_AGE - timedelta(hours=1),
        datetime.min.replace(tzinfo=UTC),
    ):
        with pytest.raises(services.RecommendationStateError, match="days ago") as exc:
            services.recommendation_mark_applied(
                recommendation_id=rec.pk, actor="ops", applied_at=applied_at
            )
        assert exc.value.field == "applied_at"
    inside = now - services.APPLIED_AT_MAX_AGE + timedelta(hours=1)
    services.recommendation_mark_applied(recommendation_id=rec.pk, actor="ops", applied_at=inside)


def test_one_recommendation_that_cannot_be_verified_does_not_stop_the_others():
    good = _applied_recommendation(improvement_ms=30)
    broken = Recommendation.objects.create(
        dedup_key="old", category="n_plus_one", title="t", endpoint="/v", confidence=0.5,
        confidence_explanation="e", predicted_ms_saved_per_day=1.0,
        predicted_db_ms_saved_per_day=1.0, complexity="low", risk="low", rollback_plan="r",
        metric_series=good.metric_series, state="claimed",
    )  # fmt: skip
    # stored before applied_at was checked: the baseline window starts before year 1
    Recommendation.objects.filter(pk=broken.pk).update(
        applied_at=datetime(1, 1, 2, tzinfo=UTC), first_seen_at=datetime(1, 1, 1, tzinfo=UTC)
    )
    counts = services.recommendations_verify()
    assert counts["errors"] == 1 and counts["succeeded"] == 1
    good.refresh_from_db()
    broken.refresh_from_db()
    assert good.state == "succeeded"
    assert broken.state == "claimed" and broken.realised["outcome"] == "error"


def _applied_on_the_global_metric(*, improvement_ms: float, global_rate: float | None):
    """An N+1 fix on /v whose only DB-time series is the global one (no per-endpoint series)."""
    now = timezone.now()
    ts = grid(31)
    applied = now - timedelta(days=3)
    rng = np.random.default_rng(7)
    values = 100 + rng.normal(0, 3, ts.size)
    values[ts >= applied.timestamp()] -= improvement_ms
    series = write("db.time.ms", ts, values)
    write("http.requests.rate", ts, 60.0, {"endpoint": "/v"})
    if global_rate is not None:
        write("http.requests.rate", ts, global_rate)
    rec = Recommendation.objects.create(
        dedup_key="g", category="n_plus_one", title="t", endpoint="/v", confidence=0.8,
        confidence_explanation="e", predicted_ms_saved_per_day=1e6,
        predicted_db_ms_saved_per_day=1e6, complexity="low", risk="low", rollback_plan="r",
        metric_series=series, evidence={"requests_per_day": 60 * 1440},
        first_seen_at=now - timedelta(days=7),
    )  # fmt: skip
    services.recommendation_claim(recommendation_id=rec.pk, actor="ops")
    services.recommendation_mark_applied(recommendation_id=rec.pk, actor="ops", applied_at=applied)
    return rec


def test_a_global_metric_is_multiplied_by_all_requests_not_the_endpoints(
    empty_telemetry,
):  # the demo world has global series too
    # db.time.ms{} is a mean over every request: a drop of x ms in it saves x ms on each of
    # them, not on the endpoint's 60 a minute
    global_rate = 600.0
    rec = _applied_on_the_global_metric(improvement_ms=30, global_rate=global_rate)
    services.recommendations_verify()
    rec.refresh_from_db()
    per_request = rec.realised["improvement_per_request"]
    assert rec.state == "succeeded"
    assert rec.realised_ms_saved_per_day == pytest.approx(
        per_request * global_rate * 1440, rel=0.01
    )


def test_a_global_metric_without_an_overall_request_rate_is_inconclusive(
    empty_telemetry,
):  # the demo world has global series too
    rec = _applied_on_the_global_metric(improvement_ms=30, global_rate=None)
    counts = services.recommendations_verify()
    rec.refresh_from_db()
    assert counts["waiting"] == 1 and rec.state == "claimed"
    assert rec.realised["outcome"] == "inconclusive" and "request rate" in rec.realised["reason"]
    assert rec.realised_ms_saved_per_day is None


def test_illegal_transitions_are_refused_with_the_field():
    rec = _applied_recommendation(improvement_ms=0)
    with pytest.raises(services.RecommendationStateError) as exc:
        services.recommendation_claim(recommendation_id=rec.pk, actor="ops")
    assert exc.value.field == "state"
    rolled = services.recommendation_rollback(recommendation_id=rec.pk, actor="ops")
    assert rolled.state == "failed" and rolled.rolled_back_at is not None
    with pytest.raises(services.RecommendationStateError):
        services.recommendation_dismiss(recommendation_id=rec.pk, actor="ops")


# --- overview ---------------------------------------------------------------------------------


def test_overview_section_follows_the_stored_state():
    assert selectors.overview_section()["health_score"] is None
    small_world(seed=3)
    services.analysis_run()
    section = selectors.overview_section()
    assert section["health_score"] == pytest.approx(HealthSnapshot.objects.get().score, abs=0.01)
    assert section["recommendations_by_state"]["active"] == Recommendation.objects.count()
    assert section["success_rate"] is None


# --- tasks ------------------------------------------------------------------------------------


def test_tasks_call_their_service_and_return_counts(django_capture_on_commit_callbacks):
    from optimization import tasks

    small_world(seed=9)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        planned = tasks.plan_baselines()
    assert planned["series"] == len(services.baseline_series_ids()) > 0
    assert planned["chunks"] >= 1 and len(callbacks) == 1  # fan-out waits for the commit
    assert tasks.recompute_baselines(series_ids=services.baseline_series_ids())["baselines"] > 0
    counts = tasks.analyze()
    assert counts["health"] == 1 and counts["recommendations_seen"] >= 1
    assert tasks.verify_recommendations() == {
        "checked": 0, "succeeded": 0, "failed": 0, "waiting": 0, "errors": 0
    }  # fmt: skip


def test_top_list_drops_active_recommendations_whose_cause_went_away():
    small_world(seed=10)
    services.analysis_run()
    rec = Recommendation.objects.get(category="n_plus_one", endpoint="/r")
    assert rec in selectors.recommendations_open()
    Recommendation.objects.filter(pk=rec.pk).update(
        last_seen_at=timezone.now() - selectors.SEEN_WITHIN - timedelta(hours=1)
    )
    assert rec not in selectors.recommendations_open()
    services.recommendation_claim(recommendation_id=rec.pk, actor="ops")
    assert rec in selectors.recommendations_open()  # claimed work stays visible


def test_a_window_counts_its_partial_first_hour_from_the_minutes_inside_it():
    """The analysis at :20 read the profiler's hourly rows from the first whole hour after the
    window's start, so the window's first 40 minutes were missing: requests per day read
    1/24 low. The first hour here also has a burst in its 20 minutes before the window, which
    a pro rata share of the hour's row would wrongly count."""
    at = datetime.fromtimestamp(timezone.now().timestamp() // 3600 * 3600, UTC)
    at -= timedelta(hours=3) - timedelta(minutes=20)
    start = at - timedelta(hours=24)
    lookup = sql_shape("SELECT * FROM author WHERE id = %s")
    slow = sql_shape("SELECT * FROM ledger WHERE total > %s")
    queries = [(lookup, 10.0)] * 6 + [(slow, 150.0)]  # an N+1 run and a slow shape
    aggregator = PerformanceAggregator(max_pending_minutes=26 * 60)  # a day in one flush
    minute = start - timedelta(minutes=20)  # the hour of the window's start, from :00
    while minute < at:  # a live analysis: nothing after its end yet
        per_minute = 40 if minute < start else 10
        for _ in range(per_minute):
            aggregator.record(endpoint="/window", ts=minute.timestamp(), latency_ms=250.0,
                              status=200, queries=queries)  # fmt: skip
        minute += timedelta(minutes=1)
    services.performance_flush(buckets=aggregator.drain())

    result = services.analysis_compute(now=at, window_hours=24)
    inside = 24 * 60 * 10  # ten requests in each minute of [start, at)
    (load,) = [e for e in result.bottlenecks["endpoints"] if e["endpoint"] == "/window"]
    assert load["requests"] == pytest.approx(inside)
    assert load["total_ms"] == pytest.approx(inside * 250.0)
    draft = next(d for d in result.drafts if (d.category, d.endpoint) == ("n_plus_one", "/window"))
    assert draft.evidence["requests_per_day"] == pytest.approx(inside)
    (query,) = [q for q in result.bottlenecks["slow_queries"] if q["endpoint"] == "/window"]
    assert query["count"] == inside and query["mean_ms"] == pytest.approx(150.0)
    assert query["excess_ms"] == pytest.approx(inside * 50.0)

    # the window's end is cut the same way: an analysis run later for the same hour (the
    # profiler has since written the rest of the hour of ``at``) reads the same figures
    later = PerformanceAggregator()
    for offset in range(40):
        later.record(endpoint="/window", ts=(at + timedelta(minutes=offset)).timestamp(),
                     latency_ms=250.0, status=200, queries=queries)  # fmt: skip
    services.performance_flush(buckets=later.drain())
    again = services.analysis_compute(now=at, window_hours=24)
    (load,) = [e for e in again.bottlenecks["endpoints"] if e["endpoint"] == "/window"]
    assert load["requests"] == pytest.approx(inside)


def test_without_minute_data_a_partial_hour_counts_pro_rata():
    """Hourly rows whose minute series are gone (raw retention passed): the parts of the two
    partial hours inside the window count in proportion to the clock."""
    at = datetime.fromtimestamp(timezone.now().timestamp() // 3600 * 3600, UTC)
    at -= timedelta(hours=3) - timedelta(minutes=20)
    first = at - timedelta(hours=24, minutes=20)
    for hour in range(25):
        EndpointProfile.objects.create(endpoint="/rows", hour=first + timedelta(hours=hour),
                                       requests=600, latency_ms_sum=600 * 80.0)  # fmt: skip
    assert telemetry.series_get("http.requests.rate", {"endpoint": "/rows"}) is None

    result = services.analysis_compute(now=at, window_hours=24)
    (load,) = [e for e in result.bottlenecks["endpoints"] if e["endpoint"] == "/rows"]
    # 40 minutes of the first hour, 23 whole hours, 20 minutes of the last
    assert load["requests"] == pytest.approx(600 * (40 / 60 + 23 + 20 / 60))
    assert load["total_ms"] == pytest.approx(load["requests"] * 80.0)

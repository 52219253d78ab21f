"""Engine tests on synthetic data with known answers; no database, no Django settings."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from optimization.engine.baselines import (
    SOURCE_HOUR_OF_DAY,
    SOURCE_HOUR_OF_WEEK,
    hour_of_week,
    hour_of_week_baseline,
)
from optimization.engine.bottlenecks import (
    UNRESOLVED_ENDPOINT,
    EndpointLoad,
    EndpointShare,
    NPlusOneFinding,
    QueryStats,
    ShapeStats,
    find_repeated_shapes,
    n_plus_one_from_requests,
    n_plus_one_from_series,
    rank_endpoints,
    regression_against_baseline,
    saturation_links,
    slow_query_shapes,
    unresolved_traffic,
)
from optimization.engine.calibration import Outcome, brier_score, calibrate
from optimization.engine.health import (
    HealthPolicy,
    TrendSignal,
    health_score,
    overall_from_endpoints,
)
from optimization.engine.impact import FAILED, INCONCLUSIVE, SUCCEEDED, realised_impact
from optimization.engine.recommendations import (
    dedup_key,
    rank_recommendations,
    recommend_hotspot,
    recommend_n_plus_one,
    recommend_regression,
    wilson_lower_bound,
)
from optimization.engine.sql_shape import shape_key, sql_shape
from optimization.engine.trends import robust_trend

STEP = 300.0
MONDAY = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


def weekly_series(weeks: float, *, seed: int = 0, noise: float = 5.0, start: float = MONDAY):
    """Latency-like series: level depends on hour of day and weekday, plus noise."""
    rng = np.random.default_rng(seed)
    ts = start + np.arange(int(weeks * 7 * 24 * 3600 / STEP)) * STEP
    how = hour_of_week(ts)
    level = 100.0 + 60.0 * np.sin(np.pi * (how % 24) / 24.0) + np.where(how >= 120, -30.0, 0.0)
    return ts, level + rng.normal(0, noise, ts.size), level


# --- sql_shape -------------------------------------------------------------------------------


def test_same_statement_with_different_parameters_has_one_shape():
    a = sql_shape("SELECT * FROM book WHERE id = 42 AND title = 'Dune'")
    b = sql_shape("SELECT *  FROM book\n WHERE id = 7 AND title = 'It''s'")
    assert a == b
    assert "42" not in a and "Dune" not in a


def test_in_lists_and_multirow_values_collapse_whatever_their_length():
    assert sql_shape("SELECT 1 FROM t WHERE id IN (%s, %s, %s)") == sql_shape(
        "SELECT 1 FROM t WHERE id IN (%s)"
    )
    assert sql_shape("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')") == sql_shape(
        "INSERT INTO t (a, b) VALUES (%s, %s)"
    )


def test_identifiers_casts_and_distinct_statements_are_kept_apart():
    shape = sql_shape('SELECT "t1"."col2", x::int FROM t1 WHERE t1.id = $1 -- trace 9')
    assert '"t1"."col2"' in shape and "::int" in shape and "trace" not in shape
    assert sql_shape("SELECT a FROM t WHERE id = 1") != sql_shape("SELECT b FROM t WHERE id = 1")
    assert shape_key(shape) == shape_key(str(shape)) and len(shape_key(shape)) == 16


def test_savepoint_names_do_not_make_a_shape_per_statement():
    """Django names savepoints after the thread and a counter that only grows: one shape each
    of SAVEPOINT / RELEASE / ROLLBACK TO, not one per transaction.atomic() ever entered."""
    for verb in ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"):
        shapes = {sql_shape(f'{verb} "s140355013823360_x{i}"') for i in range(1, 50)}
        shapes |= {sql_shape(f'{verb} "s99_x{i}"') for i in range(1, 5)}
        assert len(shapes) == 1, shapes
        assert "x1" not in shapes.pop()
    assert sql_shape('SAVEPOINT "s1_x1"') != sql_shape('RELEASE SAVEPOINT "s1_x1"')
    assert sql_shape("savepoint sp_7") == sql_shape('SAVEPOINT "s1_x2"')


# --- baselines -------------------------------------------------------------------------------


def test_hour_of_week_matches_the_calendar():
    rng = np.random.default_rng(3)
    ts = rng.uniform(0, 2e9, 200)
    expected = [
        datetime.fromtimestamp(t, UTC).weekday() * 24 + datetime.fromtimestamp(t, UTC).hour
        for t in ts
    ]
    assert hour_of_week(ts).tolist() == expected


def test_baseline_recovers_the_weekly_profile_and_ignores_outliers():
    ts, values, level = weekly_series(4, seed=1)
    spiky = values.copy()
    rng = np.random.default_rng(2)
    spikes = rng.choice(values.size, values.size // 20, replace=False)
    spiky[spikes] *= 10
    baseline = hour_of_week_baseline(ts, spiky)
    true_median = np.array([np.median(level[hour_of_week(ts) == h]) for h in range(168)])
    assert np.max(np.abs(baseline.median - true_median)) < 6.0
    assert np.all(baseline.source == SOURCE_HOUR_OF_WEEK)
    # the mean would have been dragged far away by 5 % of 10x spikes
    bucket_means = np.array([spiky[hour_of_week(ts) == h].mean() for h in range(168)])
    assert np.max(np.abs(bucket_means - true_median)) > 20.0
    assert np.all(baseline.p95 >= baseline.median)


def test_baseline_fills_gaps_from_the_same_hour_of_day():
    ts, values, _ = weekly_series(3, seed=4)
    wednesday = (hour_of_week(ts) >= 48) & (hour_of_week(ts) < 72)
    values = values.copy()
    values[wednesday] = np.nan
    baseline = hour_of_week_baseline(ts, values)
    assert np.all(baseline.source[48:72] == SOURCE_HOUR_OF_DAY)
    assert np.all(baseline.source[:48] == SOURCE_HOUR_OF_WEEK)
    for hour in (50, 60):
        same_hod = values[(hour_of_week(ts) % 24 == hour % 24) & np.isfinite(values)]
        assert baseline.median[hour] == pytest.approx(np.median(same_hod))


def test_baseline_refuses_a_series_without_values():
    with pytest.raises(ValueError):
        hour_of_week_baseline(np.arange(5.0), np.full(5, np.nan))


# --- trends ----------------------------------------------------------------------------------


def test_trend_finds_a_known_slope_despite_outliers():
    rng = np.random.default_rng(5)
    ts = MONDAY + np.arange(60) * 86400.0
    values = 200.0 + 3.0 * np.arange(60) + rng.normal(0, 4, 60)
    values[[5, 17, 40]] += 400.0
    trend = robust_trend(ts, values)
    assert trend.significant and trend.direction == "up"
    assert trend.slope_low <= 3.0 <= trend.slope_high
    assert abs(trend.slope_per_day - 3.0) < abs(np.polyfit(np.arange(60), values, 1)[0] - 3.0)


def test_daily_buckets_keep_a_flat_seasonal_series_flat():
    ts, values, _ = weekly_series(3, seed=6, noise=2.0)
    trend = robust_trend(ts, values, bucket_seconds=86400.0)
    assert trend.points == 21
    assert not trend.significant and trend.direction == "flat"


def test_trend_needs_enough_points():
    assert robust_trend(np.arange(3.0), np.arange(3.0)) is None


# --- health ----------------------------------------------------------------------------------


def healthy_inputs(n: int = 288):
    rng = np.random.default_rng(7)
    return {
        "latency_p95_ms": rng.uniform(100, 300, n),
        "error_ratio": np.zeros(n),
        "request_rate": rng.uniform(50, 150, n),
        "saturation": {"cpu": rng.uniform(0.2, 0.5, n), "db": rng.uniform(0.1, 0.4, n)},
        "trends": [
            TrendSignal("latency", robust_trend(np.arange(28.0) * 86400, rng.normal(0, 1, 28)))
        ],
    }


def test_healthy_system_scores_full_marks_and_breakdown_adds_up():
    score = health_score(**healthy_inputs())
    assert score.score == pytest.approx(100.0)
    assert all(p.points_lost == 0 for p in score.parts)
    assert set(score.breakdown()) == {"latency", "errors", "saturation", "availability", "trends"}


def test_overall_figures_from_endpoints_weigh_each_endpoint_by_its_requests():
    # 3 intervals; endpoint b has no traffic in the second, nobody in the third
    nan = np.nan
    rates = np.array([[90.0, 40.0, nan], [10.0, nan, nan]])
    p95 = np.array([[100.0, 200.0, nan], [1100.0, nan, nan]])
    errors = np.array([[0.0, 0.5, nan], [1.0, nan, nan]])
    rate, latency, failed = overall_from_endpoints(rates, p95, errors)
    assert rate[:2].tolist() == [100.0, 40.0] and np.isnan(rate[2])
    # failed requests over requests: (0 * 90 + 1 * 10) / 100 exactly
    assert failed[:2].tolist() == pytest.approx([0.1, 0.5]) and np.isnan(failed[2])
    assert latency[:2].tolist() == pytest.approx([(90 * 100 + 10 * 1100) / 100, 200.0])
    assert np.isnan(latency[2])


def test_unresolved_requests_count_in_the_overall_figures_only_by_their_server_failures():
    # a route at 100 req (2 % failing, p95 300 ms) and a scanner's flood of fast 404s
    routes = (np.array([[100.0, 100.0]]), np.array([[300.0, 300.0]]), np.array([[0.02, 0.02]]))
    flood = (np.array([[5000.0, 5000.0]]), np.array([[5.0, 5.0]]), np.array([[0.0, 0.01]]))
    rate, latency, failed = overall_from_endpoints(
        *(np.vstack([r, f]) for r, f in zip(routes, flood, strict=True)),
        routed=np.array([True, False]),
    )
    # the 404s neither dilute the failures nor pull the p95 toward 5 ms...
    assert failed[0] == pytest.approx(0.02) and latency.tolist() == pytest.approx([300.0] * 2)
    assert rate[0] == pytest.approx(100.0)
    # ...but 50 unresolved 5xx (a middleware failing before routing) are failed requests
    assert failed[1] == pytest.approx((2 + 50) / (100 + 50)) and rate[1] == pytest.approx(150.0)
    # without the flag every row is a route, as before
    assert overall_from_endpoints(*routes)[2][0] == pytest.approx(0.02)
    with pytest.raises(ValueError):
        overall_from_endpoints(*routes, routed=np.array([True, False]))


def test_latency_violations_cost_latency_points_in_proportion_to_the_budget_burnt():
    policy = HealthPolicy()
    inputs = healthy_inputs()
    lost = []
    for violating in (0, 3, 7, 15):
        latency = inputs["latency_p95_ms"].copy()
        latency[:violating] = policy.latency_target_ms * 2
        score = health_score(**{**inputs, "latency_p95_ms": latency}, policy=policy)
        breakdown = score.breakdown()
        lost.append(breakdown["latency"]["points_lost"])
        assert score.score == pytest.approx(
            100 - sum(b["points_lost"] for b in breakdown.values()), abs=0.01
        )
        assert all(breakdown[k]["points_lost"] == 0 for k in breakdown if k != "latency")
    assert lost[0] == 0 and lost[1] < lost[2] < lost[3]
    assert lost[3] == pytest.approx(policy.weights["latency"])  # 15/288 > 5 % budget: all gone


def test_the_most_saturated_resource_sets_the_saturation_part():
    inputs = healthy_inputs()
    inputs["saturation"]["db"] = np.full(288, 0.9)
    part = health_score(**inputs).breakdown()["saturation"]
    assert "db" in part["explanation"]
    assert 0 < part["points_lost"] < HealthPolicy().weights["saturation"]


def test_outage_costs_availability_and_errors():
    inputs = healthy_inputs()
    inputs["error_ratio"] = inputs["error_ratio"].copy()
    inputs["error_ratio"][100:103] = 1.0
    breakdown = health_score(**inputs).breakdown()
    assert breakdown["availability"]["points_lost"] > 0
    assert breakdown["errors"]["points_lost"] > 0


def test_only_significant_worsening_trends_cost_points():
    ts = MONDAY + np.arange(28) * 86400.0
    rng = np.random.default_rng(8)
    rising = robust_trend(ts, 200 + 8 * np.arange(28) + rng.normal(0, 3, 28))
    falling = robust_trend(ts, 400 - 8 * np.arange(28) + rng.normal(0, 3, 28))
    inputs = healthy_inputs()
    worse = health_score(**{**inputs, "trends": [TrendSignal("latency", rising)]})
    better = health_score(**{**inputs, "trends": [TrendSignal("latency", falling)]})
    assert worse.breakdown()["trends"]["points_lost"] > 0
    assert better.score == pytest.approx(100.0)
    good_news = health_score(
        **{**inputs, "trends": [TrendSignal("rps", rising, worse_when="down")]}
    )
    assert good_news.score == pytest.approx(100.0)


def test_missing_parts_are_reported_and_excluded():
    inputs = healthy_inputs()
    inputs["latency_p95_ms"] = inputs["latency_p95_ms"].copy()
    inputs["latency_p95_ms"][:100] = 10_000
    with_sat = health_score(**inputs)
    without_sat = health_score(**{**inputs, "saturation": {}})
    assert without_sat.breakdown()["saturation"]["score"] is None
    # the latency loss weighs more when fewer parts are known
    assert without_sat.score < with_sat.score
    with pytest.raises(ValueError):
        health_score()


# --- bottlenecks ------------------------------------------------------------------------------


def test_endpoints_rank_by_total_time_not_latency():
    shares = rank_endpoints(
        [
            EndpointLoad("/slow-rare", requests=10, mean_latency_ms=2000, db_ms_per_request=100),
            EndpointLoad("/busy", requests=10_000, mean_latency_ms=50, db_ms_per_request=40),
            EndpointLoad("/mid", requests=1_000, mean_latency_ms=100, db_ms_per_request=10),
        ]
    )
    assert [s.endpoint for s in shares] == ["/busy", "/mid", "/slow-rare"]
    assert sum(s.time_share for s in shares) == pytest.approx(1.0)
    assert sum(s.db_share for s in shares) == pytest.approx(1.0)


def test_unresolved_requests_are_shown_apart_and_never_a_bottleneck_or_recommendation():
    flood = EndpointLoad(UNRESOLVED_ENDPOINT, requests=500_000, mean_latency_ms=30,
                         db_ms_per_request=25, queries_per_request=2)  # fmt: skip
    routes = [
        EndpointLoad("/busy", requests=10_000, mean_latency_ms=50, db_ms_per_request=40),
        EndpointLoad("/mid", requests=1_000, mean_latency_ms=100, db_ms_per_request=10),
    ]
    shares = rank_endpoints([flood, *routes])
    assert [s.endpoint for s in shares] == ["/busy", "/mid"]
    assert shares == rank_endpoints(routes)  # the flood does not shrink the routes' shares
    assert recommend_hotspot(shares[0], window_days=1, total_ms=6e5) is not None
    seen = unresolved_traffic([flood, *routes])
    assert seen.requests == flood.requests and seen.db_ms == pytest.approx(500_000 * 25)
    all_ms = 500_000 * 30 + 10_000 * 50 + 1_000 * 100
    assert seen.share_of_all_time == pytest.approx(500_000 * 30 / all_ms)
    assert unresolved_traffic(routes) is None
    # no detector reports it, and a draft about it never reaches the ranked list
    as_share = EndpointShare(UNRESOLVED_ENDPOINT, 5e5, 1.5e7, 1.25e7, 0.9, 0.9)
    assert recommend_hotspot(as_share, window_days=1, total_ms=1.6e7) is None
    pattern = ShapeStats(UNRESOLVED_ENDPOINT, "SELECT session", 400, 500, 4000, 40_000)
    assert n_plus_one_from_requests([pattern]) == []
    loop = n1(400, 500)
    ranked = rank_recommendations(
        [recommend_n_plus_one(loop, 1000),
         recommend_n_plus_one(NPlusOneFinding(UNRESOLVED_ENDPOINT, *astuple(loop)[1:]), 1e6)]
    )  # fmt: skip
    assert [d.endpoint for d in ranked] == [loop.endpoint]
    rng = np.random.default_rng(3)
    assert (
        n_plus_one_from_series(UNRESOLVED_ENDPOINT, rng.normal(45, 3, 100),
                               rng.normal(120, 10, 100), peer_queries_per_request=[5.0])
        is None
    )  # fmt: skip
    slow = QueryStats(UNRESOLVED_ENDPOINT, "q-slow", count=20, total_ms=20 * 300, max_ms=900)
    assert slow_query_shapes([slow], threshold_ms=100) == []
    ts, values, _ = weekly_series(4, seed=11)
    history, recent = ts < ts[-1] - 86400, ts >= ts[-1] - 86400
    baseline = hour_of_week_baseline(ts[history], values[history])
    assert (
        regression_against_baseline(
            UNRESOLVED_ENDPOINT, "p95", baseline, ts[recent], values[recent] * 1.5
        )
        is None
    )


def test_saturation_link_finds_the_leading_resource_and_its_lag():
    rng = np.random.default_rng(9)
    n = 600
    db = np.clip(0.4 + 0.3 * np.sin(np.arange(n) / 15) + rng.normal(0, 0.03, n), 0, 1)
    cpu = rng.uniform(0.2, 0.6, n)
    latency = np.full(n, np.nan)
    latency[2:] = 100 + 400 * db[:-2] ** 3 + rng.normal(0, 5, n - 2)
    links = saturation_links(latency, {"db": db, "cpu": cpu})
    assert links[0].resource == "db" and links[0].lag_steps == 2 and links[0].significant
    assert links[0].latency_ms_per_unit > 0
    assert not next(link for link in links if link.resource == "cpu").significant


def test_saturation_episodes_are_found_when_a_month_long_correlation_misses_them():
    rng = np.random.default_rng(17)
    n = 8000
    pool = rng.normal(0.33, 0.03, n)
    latency = rng.normal(200, 20, n)
    for start in (1000, 5000):  # two one-hour exhaustions, latency follows 2 steps later
        pool[start : start + 12] = 0.75
        latency[start + 2 : start + 14] = 600
    cpu = rng.uniform(0.2, 0.6, n)
    links = {link.resource: link for link in saturation_links(latency, {"pool": pool, "cpu": cpu})}
    assert links["pool"].rho < 0.3  # the whole-window correlation alone would miss it
    assert links["pool"].significant and links["pool"].lag_steps == 2
    assert links["pool"].saturated_latency_ratio == pytest.approx(3.0, rel=0.1)
    assert links["pool"].saturated_excess_ms == pytest.approx(400, rel=0.1)
    assert not links["cpu"].significant
    assert links["pool"].strength > links["cpu"].strength


def test_repeated_shapes_follow_sentrys_thresholds():
    loop = [("SELECT author WHERE id = ?", 12.0)] * 6
    assert find_repeated_shapes([("SELECT 1", 1.0), *loop, ("SELECT 2", 1.0)])[0].repeats == 6
    assert find_repeated_shapes(loop[:4]) == []  # fewer than 5 repeats
    assert find_repeated_shapes([("q", 5.0)] * 6) == []  # 30 ms in total, under 50 ms
    interleaved = [item for pair in zip(loop, [("other", 1.0)] * 6, strict=True) for item in pair]
    assert find_repeated_shapes(interleaved) == []  # not consecutive


def test_n_plus_one_findings_from_request_aggregates_rank_by_time():
    findings = n_plus_one_from_requests(
        [
            ShapeStats("/a", "q1", 10, 100, repeats_sum=60, pattern_ms_sum=600),
            ShapeStats("/b", "q2", 50, 60, repeats_sum=500, pattern_ms_sum=10_000),
            ShapeStats("/c", "q3", 0, 60, repeats_sum=0, pattern_ms_sum=0),
        ]
    )
    assert [f.endpoint for f in findings] == ["/b", "/a"]
    assert findings[0].mean_repeats == 10 and findings[0].share == pytest.approx(50 / 60)


def test_n_plus_one_suspected_from_series_only_for_the_outlier_endpoint():
    rng = np.random.default_rng(10)
    peers = [4.0, 5.0, 6.0, 5.0]
    reports = n_plus_one_from_series(
        "/api/reports",
        rng.normal(45, 3, 100),
        rng.normal(120, 10, 100),
        peer_queries_per_request=peers,
    )
    normal = n_plus_one_from_series(
        "/api/feed", rng.normal(6, 1, 100), rng.normal(20, 3, 100), peer_queries_per_request=peers
    )
    assert reports is not None and reports.share > 0.9 and reports.source == "series"
    assert normal is None


def test_slow_queries_need_repeated_evidence():
    slow = slow_query_shapes(
        [
            QueryStats("/a", "q-slow", count=20, total_ms=20 * 300, max_ms=900),
            QueryStats("/a", "q-fast", count=200, total_ms=200 * 5, max_ms=30),
            QueryStats("/b", "q-once", count=1, total_ms=5000, max_ms=5000),
        ],
        threshold_ms=100,
    )
    assert [s.shape for s in slow] == ["q-slow"]
    assert slow[0].excess_ms == pytest.approx(20 * 200)


def test_regression_is_found_against_the_hour_of_week_baseline():
    ts, values, _ = weekly_series(4, seed=11)
    history, recent = ts < ts[-1] - 86400, ts >= ts[-1] - 86400
    baseline = hour_of_week_baseline(ts[history], values[history])
    slower = values[recent] * 1.5
    found = regression_against_baseline("/x", "p95", baseline, ts[recent], slower)
    assert found is not None and found.ratio == pytest.approx(1.5, rel=0.08)
    assert regression_against_baseline("/x", "p95", baseline, ts[recent], values[recent]) is None


# --- recommendations --------------------------------------------------------------------------


def test_wilson_lower_bound_matches_scipy():
    for k, n in [(3, 10), (50, 60), (0, 5), (20, 20)]:
        expected = stats.binomtest(k, n).proportion_ci(method="wilson").low
        assert wilson_lower_bound(k, n) == pytest.approx(expected, abs=1e-9)


def n1(hits: int, total: int, source: str = "requests") -> NPlusOneFinding:
    return NPlusOneFinding(
        "/api/reports",
        "SELECT ? FROM author WHERE id = ?",
        hits,
        total,
        mean_repeats=20,
        mean_pattern_ms=100,
        source=source,
    )


def test_n_plus_one_confidence_grows_with_evidence_and_drops_for_inferred_shapes():
    few, many = recommend_n_plus_one(n1(4, 5), 1000), recommend_n_plus_one(n1(400, 500), 1000)
    assert few.confidence < many.confidence
    assert recommend_n_plus_one(n1(400, 500, "series"), 1000).confidence < many.confidence
    assert "400 of 500" in many.confidence_explanation
    assert many.rollback_plan and many.complexity and many.risk


def test_predicted_impact_scales_with_traffic_and_dedup_key_ignores_figures():
    a, b = recommend_n_plus_one(n1(40, 50), 1000), recommend_n_plus_one(n1(45, 50), 2000)
    assert a.dedup_key == b.dedup_key
    c = recommend_n_plus_one(n1(40, 50), 2000)
    assert c.predicted_ms_saved_per_day == pytest.approx(2 * a.predicted_ms_saved_per_day)
    assert a.predicted_ms_saved_per_day < 50 * 100 * 1000  # never more than the pattern's time
    assert dedup_key("n_plus_one", "/a") != dedup_key("n_plus_one", "/b")
    ranked = rank_recommendations([a, b, recommend_n_plus_one(n1(1, 50), 10)])
    assert len(ranked) == 1 and ranked[0] is b


def test_hotspot_only_for_db_bound_endpoints_holding_a_large_share():
    db_bound = EndpointShare("/r", 1000, total_ms=1e6, db_ms=8e5, time_share=0.5, db_share=0.7)
    cpu_bound = EndpointShare("/c", 1000, total_ms=1e6, db_ms=1e5, time_share=0.5, db_share=0.1)
    assert recommend_hotspot(db_bound, window_days=1, total_ms=2e6) is not None
    assert recommend_hotspot(cpu_bound, window_days=1, total_ms=2e6) is None


def test_regression_confidence_follows_effect_size():
    ts, values, _ = weekly_series(4, seed=12)
    history, recent = ts < ts[-1] - 86400, ts >= ts[-1] - 86400
    baseline = hour_of_week_baseline(ts[history], values[history])
    small = regression_against_baseline("/x", "p95", baseline, ts[recent], values[recent] * 1.3)
    big = regression_against_baseline("/x", "p95", baseline, ts[recent], values[recent] * 1.9)
    rec_small, rec_big = recommend_regression(small, 1000), recommend_regression(big, 1000)
    assert rec_small.confidence < rec_big.confidence
    assert rec_small.predicted_ms_saved_per_day < rec_big.predicted_ms_saved_per_day


# --- impact and calibration -------------------------------------------------------------------


def test_realised_impact_sees_a_real_improvement_and_its_size():
    ts, values, _ = weekly_series(5, seed=13)
    change = ts[0] + 28 * 86400
    baseline = hour_of_week_baseline(ts[ts < change], values[ts < change])
    before = (ts >= change - 2 * 86400) & (ts < change)
    after = ts >= change
    improved = values - 30.0
    impact = realised_impact(
        baseline=baseline,
        before_ts=ts[before],
        before_values=values[before],
        after_ts=ts[after],
        after_values=improved[after],
        requests_per_day=1000,
    )
    assert impact.outcome == SUCCEEDED
    assert impact.improvement_per_request == pytest.approx(30.0, abs=3.0)
    assert impact.saved_per_day == pytest.approx(1000 * impact.improvement_per_request)


def test_realised_impact_is_not_fooled_by_a_quiet_weekend():
    ts, values, _ = weekly_series(4, seed=14)
    baseline = hour_of_week_baseline(ts, values)
    how = hour_of_week(ts)
    last_week = ts >= ts[-1] - 7 * 86400
    before = last_week & (how >= 72) & (how < 120)  # Thursday-Friday
    after = last_week & (how >= 120)  # weekend: 30 ms lower by nature
    assert np.median(values[after]) < np.median(values[before])
    impact = realised_impact(
        baseline=baseline,
        before_ts=ts[before],
        before_values=values[before],
        after_ts=ts[after],
        after_values=values[after],
        requests_per_day=1000,
    )
    assert impact.outcome == FAILED and abs(impact.improvement_per_request) < 5


def test_realised_impact_is_inconclusive_without_data():
    ts, values, _ = weekly_series(2, seed=15)
    baseline = hour_of_week_baseline(ts, values)
    impact = realised_impact(
        baseline=baseline,
        before_ts=ts[:3],
        before_values=values[:3],
        after_ts=ts[-3:],
        after_values=values[-3:],
        requests_per_day=10,
    )
    assert impact.outcome == INCONCLUSIVE


def test_impact_factor_moves_toward_the_realised_ratio_as_outcomes_accumulate():
    def outcomes(n):
        return [Outcome("n_plus_one", 1000, 500, 0.8, True) for _ in range(n)]

    assert calibrate([]) == {}
    factors = [calibrate(outcomes(n))["n_plus_one"].impact_factor for n in (1, 5, 50)]
    assert 1.0 > factors[0] > factors[1] > factors[2] > 0.5
    assert factors[2] == pytest.approx(0.5, abs=0.05)


def test_confidence_calibration_fixes_overconfidence():
    rng = np.random.default_rng(16)

    def draw(n):
        raw = rng.uniform(0.5, 1.0, n)
        truth = raw - 0.4  # the detector is 40 points overconfident
        return raw, rng.uniform(0, 1, n) < truth

    raw, succeeded = draw(200)
    cal = calibrate(
        [Outcome("slow_query", 1, 1, c, bool(s)) for c, s in zip(raw, succeeded, strict=True)]
    )["slow_query"]
    test_raw, test_succeeded = draw(500)
    calibrated = [cal.calibrate_confidence(c) for c in test_raw]
    assert brier_score(calibrated, test_succeeded) < brier_score(test_raw, test_succeeded)
    assert cal.calibrate_confidence(0.9) < 0.9
    assert cal.calibrate_confidence(0.9) >= cal.calibrate_confidence(0.6)


def test_a_shape_keeps_its_database_alias_and_default_stays_bare():
    from optimization.engine.sql_shape import alias_tag, shape_database

    shape = sql_shape("SELECT * FROM book WHERE id = %s")
    assert alias_tag("default") == ""
    assert shape_database(alias_tag("default") + shape) == ("default", shape)
    tagged = alias_tag("replica") + shape
    assert shape_database(tagged) == ("replica", shape)
    assert shape_key(tagged) != shape_key(shape)
    assert sql_shape(tagged) == shape  # still SQL: the tag is a comment

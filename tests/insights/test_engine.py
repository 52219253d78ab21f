"""Engine tests: no database, data with known answers from insights.engine.synthetic."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy.stats.contingency import odds_ratio as scipy_odds_ratio

from insights.engine import behaviour as bh
from insights.engine import feature_impact as fi
from insights.engine import performance_patterns as pp
from insights.engine import priority as pr
from insights.engine import registry as reg
from insights.engine import segmentation as seg
from insights.engine import synthetic as syn

# ---------------------------------------------------------------- segmentation


@pytest.fixture(scope="module")
def population() -> syn.Population:
    return syn.make_population({"explorer": 120, "optimizer": 120, "socializer": 120}, seed=3)


@pytest.fixture(scope="module")
def segmented(population: syn.Population) -> seg.SegmentationResult:
    return seg.segment_users(population.features, population.feature_names, k_range=range(2, 6))


def _majority_segment(result: seg.SegmentationResult, kinds: np.ndarray, kind: str) -> int:
    return int(np.bincount(result.labels[kinds == kind]).argmax())


def test_segmentation_finds_the_true_number_of_kinds(segmented, population):
    assert segmented.k == len(set(population.kinds))
    assert seg.agreement_with_truth(segmented.labels, population.kinds)["adjusted_rand"] > 0.8


def test_k_is_the_silhouette_maximiser(segmented):
    best = max(segmented.silhouette_by_candidate, key=segmented.silhouette_by_candidate.get)
    assert best == f"{segmented.method}:{segmented.k}"
    assert segmented.silhouette_train == pytest.approx(segmented.silhouette_by_candidate[best])


def test_holdout_silhouette_is_lower_without_structure(segmented):
    rng = np.random.default_rng(0)
    blob = rng.poisson(5.0, size=(360, 11)).astype(float)
    flat = seg.segment_users(blob, syn.BEHAVIOUR_FEATURES, k_range=range(2, 6))
    assert flat.n_train + flat.n_holdout == 360
    assert flat.silhouette_holdout < segmented.silhouette_holdout - 0.1


def test_gmm_can_compete_and_the_winner_is_recorded(population):
    result = seg.segment_users(
        population.features, population.feature_names, k_range=(2, 3), methods=("kmeans", "gmm")
    )
    assert {"kmeans:2", "kmeans:3", "gmm:2", "gmm:3"} == set(result.silhouette_by_candidate)
    assert result.params["method"] == result.method


def test_segments_are_described_by_what_sets_them_apart(segmented, population):
    optimizers = _majority_segment(segmented, population.kinds, "optimizer")
    profile = next(p for p in segmented.profiles if p.label == optimizers)
    top = profile.distinguishing[0]
    assert top.feature in {"shortcuts", "tasks"} and top.direction == "high"
    assert "shortcuts" in profile.name
    socializers = _majority_segment(segmented, population.kinds, "socializer")
    social = next(p for p in segmented.profiles if p.label == socializers)
    actions = seg.recommend_targeting(social)
    assert seg.DEFAULT_PLAYBOOK[("social", "high")] in actions


def test_z_grows_with_segment_size_but_effect_does_not():
    rng = np.random.default_rng(1)
    x = rng.normal(10, 2, size=(200, 2))
    x[:50, 0] += 3
    labels = np.r_[np.zeros(50, int), np.ones(150, int)]
    once = seg.describe_segments(x, labels, ["a", "b"])[0].deviations
    twice = seg.describe_segments(np.vstack([x, x]), np.r_[labels, labels], ["a", "b"])[0]
    a1 = next(d for d in once if d.feature == "a")
    a2 = next(d for d in twice.deviations if d.feature == "a")
    assert a2.effect == pytest.approx(a1.effect, rel=0.01)
    assert a2.z / a1.z == pytest.approx(math.sqrt(2), rel=0.02)


def test_typical_segment_gets_no_targeting():
    flat = seg.SegmentProfile(
        label=0,
        size=10,
        share=0.5,
        deviations=(seg.FeatureDeviation("purchases", 1.0, 1.0, 0.05, 0.2),),
        centroid=(0.0,),
    )
    assert flat.name == "typical users"
    assert seg.recommend_targeting(flat) == []


def test_match_segments_undoes_a_relabelling():
    rng = np.random.default_rng(2)
    previous = rng.normal(size=(4, 3)) * 5
    perm = np.array([2, 0, 3, 1])
    current = previous[perm] + rng.normal(0, 0.05, size=(4, 3))
    assert seg.match_segments(previous, current) == {i: int(perm[i]) for i in range(4)}


def _version(sizes: dict[str, int], *, seed: int, drift: float = 1.0):
    """One model version on a synthetic population; ``drift`` scales every user's counts."""
    population = syn.make_population(sizes, seed=seed)
    result = seg.segment_users(
        population.features * drift, population.feature_names, k_range=range(2, 6)
    )
    kinds = [
        str(max(set(k), key=list(k).count))
        for k in (population.kinds[result.labels == p.label] for p in result.profiles)
    ]
    return result, kinds


def _match_versions(old: seg.SegmentationResult, new: seg.SegmentationResult) -> dict[int, int]:
    """As the service does: old centroids moved into the new scaler's space, then matched."""
    old_scale, new_scale = old.model.named_steps["scale"], new.model.named_steps["scale"]
    centroids, spreads = seg.restandardise(
        [p.centroid for p in old.profiles],
        [p.spread for p in old.profiles],
        from_mean=old_scale.mean_,
        from_scale=old_scale.scale_,
        to_mean=new_scale.mean_,
        to_scale=new_scale.scale_,
    )
    return seg.match_segments(
        centroids,
        [p.centroid for p in new.profiles],
        previous_spread=spreads,
        current_spread=[p.spread for p in new.profiles],
    )


def test_a_vanished_segment_and_a_distant_new_one_do_not_share_a_line():
    """Achievers leave and socializers arrive between two versions: the kinds present in
    both are paired with each other, the newcomer starts its own line, the achievers end."""
    old, old_kinds = _version({"explorer": 200, "optimizer": 200, "achiever": 200}, seed=0)
    new, new_kinds = _version({"explorer": 200, "optimizer": 200, "socializer": 200}, seed=1)
    assert sorted(old_kinds) == ["achiever", "explorer", "optimizer"]
    assert sorted(new_kinds) == ["explorer", "optimizer", "socializer"]
    pairs = _match_versions(old, new)
    assert {new_kinds[c]: old_kinds[p] for c, p in pairs.items()} == {
        "explorer": "explorer",
        "optimizer": "optimizer",
    }
    # Without the limit (the old behaviour) the newcomer took the achievers' line.
    unlimited = seg.match_segments(
        [p.centroid for p in old.profiles], [p.centroid for p in new.profiles]
    )
    assert old_kinds[unlimited[new_kinds.index("socializer")]] == "achiever"


def test_a_segment_that_drifts_a_little_keeps_its_line():
    """Other users, other group sizes and 15 % more activity overall: still the same groups."""
    old, old_kinds = _version({"explorer": 200, "optimizer": 200, "achiever": 200}, seed=0)
    new, new_kinds = _version(
        {"explorer": 170, "optimizer": 240, "achiever": 190}, seed=5, drift=1.15
    )
    pairs = _match_versions(old, new)
    assert len(pairs) == 3
    assert all(new_kinds[c] == old_kinds[p] for c, p in pairs.items())


def test_separation_does_not_depend_on_the_scale_of_the_features():
    rng = np.random.default_rng(4)
    previous = rng.normal(size=(3, 4)) * 10
    current = np.vstack([previous[0] + 0.3, previous[1] - 0.2, previous[2] + 40])
    spreads = np.array([2.0, 1.5, 2.5])
    pairs = seg.match_segments(previous, current, previous_spread=spreads, current_spread=spreads)
    assert pairs == {0: 0, 1: 1}  # the far third is a new segment, not a continuation
    for factor in (1e-3, 1e3):
        assert (
            seg.match_segments(
                previous * factor,
                current * factor,
                previous_spread=spreads * factor,
                current_spread=spreads * factor,
            )
            == pairs
        )
    separation = seg.segment_separation(previous, current, spreads, spreads)
    assert np.allclose(
        separation, seg.segment_separation(previous * 7, current * 7, spreads * 7, spreads * 7)
    )


def test_a_far_pair_does_not_take_a_close_partner_from_another_segment():
    """Plain Hungarian minimises the total distance, which can pair A with B's old self
    and B with something far; pricing far pairs out keeps every close pair it can."""
    previous = np.array([[0.0, 0.0], [1.0, 0.0]])
    current = np.array([[0.5, 0.0], [-10.0, 0.0]])
    spreads = np.ones(2)
    # Unlimited: {0: 1, 1: 0} (total 0.5 + 10) beats {0: 0, 1: 1} (0.5 + 11).
    assert seg.match_segments(previous, current) == {0: 1, 1: 0}
    pairs = seg.match_segments(previous, current, previous_spread=spreads, current_spread=spreads)
    assert len(pairs) == 1 and 1 not in pairs


def test_an_unknown_spread_borrows_its_counterparts():
    previous = np.array([[0.0, 0.0]])
    current = np.array([[0.5, 0.0]])
    assert seg.match_segments(
        previous, current, previous_spread=[np.nan], current_spread=[1.0]
    ) == {0: 0}
    assert (
        seg.match_segments(previous, current, previous_spread=[np.nan], current_spread=[0.1]) == {}
    )


def test_restandardise_undoes_one_scaler_and_applies_the_other():
    rng = np.random.default_rng(6)
    profile = rng.normal(size=(3, 4))
    m1, s1 = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    m2, s2 = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    moved, spreads = seg.restandardise(
        (profile - m1) / s1, [1.0, 2.0, 3.0], from_mean=m1, from_scale=s1, to_mean=m2, to_scale=s2
    )
    assert np.allclose(moved, (profile - m2) / s2)
    assert np.allclose(spreads, np.array([1.0, 2.0, 3.0]) * np.sqrt(np.mean((s1 / s2) ** 2)))


def test_spread_is_the_rms_distance_of_members_from_their_centroid():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [10.0, 12.0]])
    profiles = seg.describe_segments(x, np.array([0, 0, 1, 1]), ["a", "b"])
    assert [p.spread for p in profiles] == pytest.approx([1.0, 1.0])


def test_segment_trend_detects_growth_and_ignores_noise():
    rng = np.random.default_rng(4)
    days = np.arange(14.0)
    growing = seg.segment_trend(days, 0.2 + 0.01 * days + rng.normal(0, 0.004, 14))
    assert growing.direction == "growing"
    assert growing.slope_per_day == pytest.approx(0.01, abs=0.003)
    noise = seg.segment_trend(days, 0.2 + rng.normal(0, 0.004, 14))
    assert noise.direction == "stable"
    assert seg.segment_trend(days[:2], [0.1, 0.5]).direction == "stable"


def test_trend_test_accounts_for_overlapping_windows():
    """Trailing 7-day means of pure noise: the naive test sees trends far more often
    than 5% of the time; the overlap-aware test stays near its nominal rate."""
    rng = np.random.default_rng(5)
    naive = aware = 0
    runs = 300
    for _ in range(runs):
        daily = rng.normal(0.3, 0.05, 34)
        rolling = np.convolve(daily, np.ones(7) / 7, mode="valid")  # 28 overlapping points
        days = np.arange(len(rolling), dtype=float)
        naive += seg.segment_trend(days, rolling).direction != "stable"
        aware += seg.segment_trend(days, rolling, overlap=7).direction != "stable"
    assert naive / runs > 0.3
    assert aware / runs < 0.12


def test_segment_shares_follow_the_population_mix(segmented, population):
    optimizers = _majority_segment(segmented, population.kinds, "optimizer")
    few = syn.make_population({"optimizer": 20, "explorer": 80}, seed=9).features
    many = syn.make_population({"optimizer": 80, "explorer": 20}, seed=9).features
    s_few = seg.segment_shares(segmented.model, few, segmented.k)
    s_many = seg.segment_shares(segmented.model, many, segmented.k)
    assert s_few.sum() == pytest.approx(1.0)
    assert s_many[optimizers] > s_few[optimizers] + 0.4


@pytest.mark.parametrize(
    ("features", "names", "message"),
    [
        (np.full((50, 2), np.nan), ["a", "b"], "NaN"),
        (np.ones((50, 2)), ["a"], "one column per feature"),
        (np.ones((6, 2)), ["a", "b"], "too few users"),
    ],
)
def test_segmentation_rejects_bad_input(features, names, message):
    with pytest.raises(ValueError, match=message):
        seg.segment_users(features, names, k_range=range(2, 5))


# -------------------------------------------------------------- feature impact


@pytest.fixture(scope="module")
def usage() -> syn.FeatureUsage:
    # f0 strong and rare, f1 strong and common, f2 harmful, f3/f4 no effect, f5 proxy of f0.
    return syn.make_feature_usage(
        4000,
        adoption=[0.1, 0.6, 0.3, 0.5, 0.4, 0.15],
        true_log_odds=[1.2, 0.8, -0.8, 0.0, 0.0, 0.0],
        proxy_of={5: 0},
        seed=5,
    )


def test_smoothed_odds_ratio_matches_scipy_on_the_smoothed_table():
    table = fi.ContingencyTable("f", used_success=30, used_failure=10, unused_success=40,
                                unused_failure=60)  # fmt: skip
    (result,) = fi.odds_ratios([table], min_users=1)
    smoothed = [[31, 11], [41, 61]]
    assert result.odds_ratio == pytest.approx(scipy_odds_ratio(smoothed, kind="sample").statistic)
    ci = scipy_odds_ratio(smoothed, kind="sample").confidence_interval(0.95)
    # Woolf's interval is close to SciPy's exact conditional interval at these counts.
    assert result.ci_low == pytest.approx(ci.low, rel=0.1)
    assert result.ci_high == pytest.approx(ci.high, rel=0.1)


def test_minimum_support_follows_posthog_rule():
    n = 10_000  # 2% of users = 200 > 25, so the bar is 25 users
    rare = fi.ContingencyTable("rare", 10, 14, 5000, n - 5024)
    enough = fi.ContingencyTable("enough", 10, 15, 5000, n - 5025)
    kept = {r.feature for r in fi.odds_ratios([rare, enough])}
    assert kept == {"enough"}
    small = 400  # 2% of users = 8 < 25, so the bar is 8 users
    table = fi.ContingencyTable("f", 4, 4, 100, small - 108)
    assert [r.feature for r in fi.odds_ratios([table])] == ["f"]


def test_odds_ratios_recover_the_direction_of_true_effects(usage):
    tables = fi.contingency_tables(usage.usage, usage.outcome, usage.feature_names)
    assert all(t.total == len(usage.outcome) for t in tables)
    ratios = {r.feature: r for r in fi.odds_ratios(tables)}
    for j, name in enumerate(usage.feature_names[:5]):
        beta = usage.true_log_odds[j]
        if beta > 0:
            assert ratios[name].significant and ratios[name].odds_ratio > 1
        elif beta < 0:
            assert ratios[name].significant and ratios[name].odds_ratio < 1
        else:
            assert not ratios[name].significant
    # The proxy of a real effect looks like an effect in a 2x2 table.
    assert ratios["feature_05"].significant


@pytest.fixture(scope="module")
def impact_model(usage) -> fi.ImpactModelResult:
    return fi.fit_impact_model(
        usage.usage, usage.outcome, usage.feature_names, model_kind="logistic", n_repeats=5
    )


def test_impact_model_ranks_real_effects_above_proxies_and_nulls(usage, impact_model):
    assert impact_model.auc_holdout > 0.6
    by_name = {f.feature: f for f in impact_model.importances}
    for real in ("feature_00", "feature_01", "feature_02"):
        assert by_name[real].reliable
        for fake in ("feature_03", "feature_04", "feature_05"):
            assert by_name[real].importance > by_name[fake].importance
    assert not by_name["feature_05"].reliable
    assert impact_model.n_train + impact_model.n_holdout == len(usage.outcome)


def test_impact_model_auc_drops_when_the_outcome_is_noise(usage):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 2, size=len(usage.outcome))
    result = fi.fit_impact_model(
        usage.usage, noise, usage.feature_names, model_kind="gradient_boosting", n_repeats=2
    )
    assert result.auc_holdout < 0.56


def test_suggestions_promote_rare_winners_and_review_costly_nulls(usage, impact_model):
    ratios = fi.odds_ratios(fi.contingency_tables(usage.usage, usage.outcome, usage.feature_names))
    costs = {name: 1.0 for name in usage.feature_names}
    costs["feature_03"] = 50.0  # a costly feature with no effect
    suggestions = fi.suggest_feature_actions(ratios, impact_model.importances, costs=costs)
    actions = {(s.feature, s.action) for s in suggestions}
    assert ("feature_00", "promote") in actions  # strong, 10% adoption
    assert ("feature_01", "promote") not in actions  # strong but already common
    assert ("feature_05", "promote") not in actions  # only a proxy
    assert ("feature_03", "review") in actions
    assert ("feature_04", "review") not in actions  # no effect, but cheap


def test_feature_impact_rejects_bad_input(usage):
    with pytest.raises(ValueError, match="at least 5 successes"):
        fi.fit_impact_model(usage.usage, np.zeros(len(usage.outcome)), usage.feature_names)
    with pytest.raises(ValueError, match="matching"):
        fi.contingency_tables(usage.usage, usage.outcome[:10], usage.feature_names)
    with pytest.raises(ValueError, match="unknown model kind"):
        fi.fit_impact_model(usage.usage, usage.outcome, usage.feature_names, model_kind="svm")


# --------------------------------------------------------- performance patterns


@pytest.fixture(scope="module")
def history() -> syn.SystemHistory:
    return syn.make_system_history(days=21, seed=7, decoupled_incidents=5)


@pytest.fixture(scope="module")
def state_model(history) -> pp.StateModelResult:
    return pp.fit_state_model(history.ts, history.states, history.columns, n_estimators=100)


def test_forest_finds_states_that_no_single_series_shows(history, state_model):
    held = pp.evaluate_against_incidents(
        state_model.holdout_ts,
        state_model.holdout_scores,
        state_model.model.threshold,
        history.incidents,
    )
    assert held["incidents"] >= 2
    assert held["incident_recall"] == 1.0
    assert held["auc"] > 0.95
    n = state_model.n_train
    single = pp.single_series_scores(history.states[:n], history.states[n:])
    baseline = pp.evaluate_against_incidents(
        state_model.holdout_ts, single, np.inf, history.incidents
    )
    assert baseline["auc"] < held["auc"] - 0.15


def test_split_is_time_ordered(state_model):
    assert state_model.train_end_ts < state_model.holdout_ts.min()
    assert state_model.n_holdout == len(state_model.holdout_ts)


def test_point_metrics_on_a_hand_made_case():
    ts = np.arange(10.0)
    scores = np.array([0, 0, 5, 5, 0, 0, 5, 0, 0, 0], dtype=float)
    windows = [(2.0, 4.0), (8.0, 9.0)]  # steps 2,3,4 and 8,9
    m = pp.evaluate_against_incidents(ts, scores, 1.0, windows)
    assert m["precision"] == pytest.approx(2 / 3)  # flagged 2,3,6
    assert m["recall"] == pytest.approx(2 / 5)
    assert m["incident_recall"] == pytest.approx(1 / 2)
    empty = pp.evaluate_against_incidents(ts, scores, 1.0, [])
    assert math.isnan(empty["auc"]) and math.isnan(empty["recall"])


def test_recurring_patterns_are_grouped_and_the_weekly_one_is_dated(history, state_model):
    episodes = pp.find_episodes(history.ts, history.states, state_model.model)
    patterns = pp.group_patterns(episodes, history.columns)
    weekly_starts = [a for a, k in zip(history.incidents, history.incident_kinds, strict=True)
                     if k == "weekly_job"]  # fmt: skip
    injected_hour = pp.hour_of_week(weekly_starts[0][0])
    weekly = [p for p in patterns if p.weekly_recurring]
    assert len(weekly) == 1
    assert weekly[0].weekly_hour == injected_hour
    assert weekly[0].count == len(weekly_starts)
    assert "cpu higher" in weekly[0].describe()
    decoupled = [p for p in patterns if not p.weekly_recurring]
    assert decoupled and "traffic lower" in decoupled[0].describe()


def test_hour_of_week_counts_from_monday_midnight_utc():
    ts = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)  # a Wednesday
    assert pp.hour_of_week(ts.timestamp()) == ts.weekday() * 24 + ts.hour


def test_state_model_rejects_gaps_in_data(history):
    broken = history.states.copy()
    broken[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pp.fit_state_model(history.ts, broken, history.columns)
    with pytest.raises(ValueError, match="at least 60 steps"):
        pp.fit_state_model(history.ts[:30], history.states[:30], history.columns)


# ------------------------------------------------------------------- priority


def test_priority_is_the_product_of_its_parts_and_explains_them():
    p = pr.priority(
        impact=pr.impact_from_odds_ratio(3.0),
        confidence=pr.confidence_from_p_value(0.01),
        novelty=pr.novelty(previous_value=None, current_value=3.0, days_since_first_seen=0),
    )
    assert p.score == pytest.approx(p.impact.value * p.confidence.value * p.novelty.value)
    for part in (p.impact, p.confidence, p.novelty):
        assert f"{part.value:.2f}" in p.explanation
    weaker = pr.priority(
        impact=pr.impact_from_odds_ratio(1.5), confidence=p.confidence, novelty=p.novelty
    )
    assert weaker.score < p.score


def test_odds_ratio_impact_is_symmetric_in_log_space():
    assert pr.impact_from_odds_ratio(2.0).value == pytest.approx(
        pr.impact_from_odds_ratio(0.5).value
    )
    assert pr.impact_from_odds_ratio(1.0).value == 0.0


def test_confidence_sources_are_monotone():
    assert pr.confidence_from_auc(0.5).value == 0.0
    assert pr.confidence_from_auc(0.9).value > pr.confidence_from_auc(0.7).value
    assert (
        pr.confidence_from_count(100, half_at=50).value
        > pr.confidence_from_count(10, half_at=50).value
    )
    assert pr.confidence_from_p_value(float("nan")).value == 0.0


def test_novelty_decays_while_unchanged_and_returns_when_the_figure_moves():
    fresh = pr.novelty(previous_value=None, current_value=1.0, days_since_first_seen=0).value
    old = pr.novelty(previous_value=1.0, current_value=1.0, days_since_first_seen=14).value
    older = pr.novelty(previous_value=1.0, current_value=1.0, days_since_first_seen=28).value
    moved = pr.novelty(previous_value=1.0, current_value=2.0, days_since_first_seen=28).value
    assert fresh == 1.0 > old > older
    assert moved > older


def test_a_crossing_moves_materially_only_when_it_comes_a_share_of_its_horizon_earlier():
    day = pr.DAY_S
    month, year = pr.crossing_material_seconds(30), pr.crossing_material_seconds(365)
    assert month == pytest.approx(pr.CROSSING_MATERIAL_SHARE * 30 * day) and year > month
    assert pr.crossing_material_seconds(0) == day  # never finer than a day
    dismissed = 1_800_000_000.0

    def moved(shift_days: float, material: float = month) -> float:
        at = dismissed + shift_days * day
        return pr.crossing_moved(reference_at=dismissed, current_at=at, material_seconds=material)

    assert moved(0) == 0.0 and moved(+60) == 0.0  # unchanged, or later: no news
    assert 0 < moved(-5) < 1 <= moved(-8)  # 7.5 days is a quarter of 30
    assert moved(-8, year) < 1  # the same week is noise on a year's forecast
    # the score the service uses: nothing moves as the crossing draws near on its own
    for age in (1.0, 14.0, 28.0):
        stale = pr.novelty(previous_value=dismissed, current_value=dismissed,
                           days_since_first_seen=age, moved=moved(0))  # fmt: skip
        plain = pr.novelty(previous_value=1.0, current_value=1.0, days_since_first_seen=age)
        assert stale.value == pytest.approx(plain.value)
    near = pr.novelty(previous_value=dismissed, current_value=dismissed - 10 * day,
                      days_since_first_seen=28, moved=moved(-10))  # fmt: skip
    assert near.value == 1.0


def test_dedup_key_is_stable_and_specific():
    a = pr.dedup_key("feature_impact", "insights", "promote", "Search ")
    assert a == pr.dedup_key("feature_impact", "insights", "promote", "search")
    assert a != pr.dedup_key("feature_impact", "insights", "promote", "checkout")
    long = pr.dedup_key("segment", "insights", "x" * 500)
    assert len(long) <= 100
    with pytest.raises(ValueError):
        pr.dedup_key("", "insights")


# ------------------------------------------------------------------- registry


def test_artefact_roundtrip_keeps_predictions(segmented, population):
    art = reg.artefact_dump(segmented.model)
    loaded = reg.artefact_load(art.payload, sha256=art.sha256)
    assert np.array_equal(loaded.predict(population.features), segmented.labels)


def test_tampered_or_corrupt_artefacts_are_refused(segmented):
    art = reg.artefact_dump(segmented.model)
    with pytest.raises(reg.ArtefactError, match="checksum"):
        reg.artefact_load(art.payload[:-1] + b"x", sha256=art.sha256)
    with pytest.raises(reg.ArtefactError):
        reg.artefact_load(b"not a model")


def test_activation_policy_compares_primary_metrics():
    kind = reg.KIND_CLUSTERING
    assert reg.should_activate(kind, {"silhouette": 0.3}, None)
    assert reg.should_activate(kind, {"silhouette": 0.29}, {"silhouette": 0.3})
    assert not reg.should_activate(kind, {"silhouette": 0.2}, {"silhouette": 0.3})
    assert not reg.should_activate(kind, {"silhouette": float("nan")}, {"silhouette": 0.3})
    assert reg.should_activate(kind, {"silhouette": float("nan")}, None)
    assert reg.should_activate(kind, {"silhouette": 0.1}, {"silhouette": None})
    assert reg.should_activate(reg.KIND_ANOMALY, {"auc": 0.7}, {"precision": 0.9})
    assert reg.clean_metrics({"auc": float("nan"), "x": 1}) == {"auc": None, "x": 1.0}


def test_a_version_on_other_inputs_is_activated_without_a_score_comparison():
    """The active version cannot score new inputs: its better score must not block them."""
    kind = reg.KIND_ANOMALY
    worse, better = {"auc": 0.55}, {"auc": 0.95}
    same = reg.decide_activation(
        kind, worse, better, new_inputs=["cpu", "memory"], active_inputs=["cpu", "memory"]
    )
    assert not same.activate and same.rule == reg.RULE_OWN_HOLDOUT
    changed = reg.decide_activation(
        kind, worse, better, new_inputs=["cpu", "memory", "queue"], active_inputs=["cpu", "disk"]
    )
    assert changed.activate and changed.rule == reg.RULE_INPUTS_CHANGED
    assert "added memory, queue" in changed.reason and "removed disk" in changed.reason
    reordered = reg.decide_activation(
        kind, worse, better, new_inputs=["memory", "cpu"], active_inputs=["cpu", "memory"]
    )
    assert reordered.activate and "reordered" in reordered.reason
    # Unknown inputs on either side (versions stored before inputs were recorded): scores.
    unknown = reg.decide_activation(kind, worse, better, new_inputs=["cpu"], active_inputs=None)
    assert not unknown.activate and unknown.rule == reg.RULE_OWN_HOLDOUT
    first = reg.decide_activation(kind, worse, None, new_inputs=["cpu"])
    assert first.activate and first.rule == reg.RULE_FIRST


def _mean_of(values: np.ndarray):
    return lambda idx: float(np.mean(values[idx]))


def test_paired_bootstrap_se_is_that_of_the_mean_difference_not_of_each_score():
    """Known answer: for a metric that is a mean of per-row values, the paired SE is
    sd(row differences) / sqrt(n), whatever each version's own spread."""
    rng = np.random.default_rng(3)
    n = 400
    shared = rng.normal(0, 1.0, n)  # hard and easy rows: both versions feel them
    diff = rng.normal(0.05, 0.2, n)
    old, new = shared, shared + diff
    result = reg.paired_bootstrap(_mean_of(new), _mean_of(old), n, n_boot=400)
    expected_se = np.std(diff, ddof=1) / np.sqrt(n)
    assert result.diff == pytest.approx(diff.mean())
    assert result.se == pytest.approx(expected_se, rel=0.2)
    unpaired_se = np.sqrt(np.var(new, ddof=1) / n + np.var(old, ddof=1) / n)
    assert result.se < unpaired_se / 4
    assert result.ci_low < diff.mean() < result.ci_high


def test_block_bootstrap_sees_the_noise_of_autocorrelated_rows():
    """Rows in runs of 20 near-identical values hold 50 independent values, not 1000: the
    ordinary bootstrap understates the SE by about sqrt(20), blocks of 20 do not."""
    rng = np.random.default_rng(4)
    runs = np.repeat(rng.normal(0, 1.0, 50), 20)
    zero = np.zeros_like(runs)
    iid = reg.paired_bootstrap(_mean_of(runs), _mean_of(zero), len(runs), n_boot=300)
    blocked = reg.paired_bootstrap(_mean_of(runs), _mean_of(zero), len(runs), n_boot=300, block=20)
    true_se = np.std(np.unique(runs), ddof=1) / np.sqrt(50)
    assert blocked.se == pytest.approx(true_se, rel=0.35)
    assert iid.se < blocked.se / 3


def test_paired_auc_matches_sklearn_and_finds_the_better_scorer():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y = rng.random(600) < 0.3
    good = y + rng.normal(0, 0.6, 600)
    useless = rng.normal(0, 1, 600)
    result = reg.paired_auc(y, good, useless)
    assert result.new == pytest.approx(roc_auc_score(y, good))
    assert result.old == pytest.approx(roc_auc_score(y, useless))
    assert result.ci_low > 0.2  # clearly better
    tie = reg.paired_auc(y, good, good)
    assert tie.diff == 0 and tie.se == 0
    one_class = reg.paired_auc(np.zeros(50), good[:50], useless[:50])
    assert not one_class.measurable
    ties = np.round(good * 2) / 2  # many tied scores
    assert reg.rank_auc(y, ties) == pytest.approx(roc_auc_score(y, ties))


def test_a_paired_auc_on_a_handful_of_positives_is_not_measurable():
    """One incident among 60 unseen states made the paired AUC the rank of one row, and
    its bootstrap SE looked decisive enough to refuse a retrain."""
    rng = np.random.default_rng(7)
    y = np.zeros(60, dtype=bool)
    y[[10]] = True
    old = rng.normal(0, 1, 60)
    old[10] = 5.0  # the active version happens to rank the one incident first
    new = rng.normal(0, 1, 60)
    few = reg.paired_auc(y, new, old)
    assert few.n == 60 and not few.measurable
    decided = reg.decide_activation(reg.KIND_FEATURE_IMPACT, {"auc": 0.9}, {"auc": 0.9}, paired=few)
    assert decided.rule == reg.RULE_OWN_HOLDOUT and decided.activate
    y[[10, 20, 30, 40, 50]] = True  # five of each class: measured
    assert reg.paired_auc(y, new, old).measurable


def test_paired_silhouette_prefers_the_segmentation_that_follows_the_groups():
    rng = np.random.default_rng(6)
    centres = np.array([[0, 0], [6, 0], [0, 6]])
    truth = rng.integers(0, 3, 300)
    space = centres[truth] + rng.normal(0, 1, (300, 2))
    shuffled = rng.permutation(truth)
    result = reg.paired_silhouette(space, truth, space, shuffled, n_boot=40)
    assert result.diff > 0.3 and result.ci_low > 0
    same = reg.paired_silhouette(space, truth, space, truth, n_boot=20)
    assert same.diff == 0 and same.se == 0


def test_a_paired_comparison_decides_over_each_versions_own_score():
    kind = reg.KIND_FEATURE_IMPACT
    clearly_worse = reg.PairedComparison(n=500, new=0.6, old=0.7, diff=-0.1, se=0.02, n_boot=200)
    noise = reg.PairedComparison(n=500, new=0.6, old=0.7, diff=-0.1, se=0.08, n_boot=200)
    tie = reg.PairedComparison(n=500, new=0.7, old=0.7, diff=0.0, se=0.02, n_boot=200)
    own_better, own_worse = ({"auc": 0.9}, {"auc": 0.6}), ({"auc": 0.5}, {"auc": 0.9})
    refused = reg.decide_activation(kind, *own_better, paired=clearly_worse)
    assert not refused.activate and refused.rule == reg.RULE_PAIRED
    assert "500 rows" in refused.reason
    kept = reg.decide_activation(kind, *own_worse, paired=tie)
    assert kept.activate and kept.rule == reg.RULE_PAIRED
    # Worse by more than the tolerance but within noise: not refused on the paired rule.
    assert reg.decide_activation(kind, *own_better, paired=noise).activate
    # Too few shared rows: the own held-out rule decides, and says why.
    few = reg.PairedComparison(n=10, new=0.6, old=0.7, diff=-0.1, se=0.01, n_boot=200)
    fallback = reg.decide_activation(kind, *own_worse, paired=few)
    assert not fallback.activate and fallback.rule == reg.RULE_OWN_HOLDOUT
    assert "too few rows" in fallback.reason
    # Inputs changed wins over a paired comparison (which could not have been made).
    changed = reg.decide_activation(
        kind, *own_better, paired=clearly_worse, new_inputs=["a"], active_inputs=["b"]
    )
    assert changed.rule == reg.RULE_INPUTS_CHANGED


# ------------------------------------------------------------ behaviour inputs

DAY = 86400.0


def _frame(rows):
    users, names, ts, props = zip(*rows, strict=True)
    return {
        "user_id": np.array(users, dtype=object),
        "name": np.array(names, dtype=object),
        "ts": np.array(ts, dtype=float),
        "properties": np.array(props, dtype=object),
    }


def test_behaviour_matrix_counts_breadth_and_active_days():
    frame = _frame(
        [
            ("a", "session_start", 0.0, {}),
            ("a", "page_view", 10.0, {"feature": "search"}),
            ("a", "feature_use", 20.0, {"feature": "search"}),
            ("a", "feature_use", DAY + 5, {"feature": "export"}),
            ("a", "share", DAY + 6, {}),
            ("a", "comment", DAY + 7, {}),
            ("b", "purchase", 3 * DAY, {"amount": 9}),
        ]
    )
    m = bh.behaviour_matrix(frame)
    col = {name: j for j, name in enumerate(m.feature_names)}
    a, b = list(m.user_ids).index("a"), list(m.user_ids).index("b")
    assert m.features[a, col["sessions"]] == 1
    assert m.features[a, col["page_views"]] == 1
    assert m.features[a, col["feature_breadth"]] == 2
    assert m.features[a, col["social"]] == 2
    assert m.features[a, col["active_days"]] == 2
    assert m.features[b, col["purchases"]] == 1 and m.features[b, col["sessions"]] == 0
    weekly = bh.behaviour_matrix(frame, window_days=14)
    assert weekly.features[a, col["social"]] == pytest.approx(1.0)  # 2 in two weeks


def test_cohort_counts_early_use_only_and_judges_outcomes_after_it():
    frame = _frame(
        [
            ("a", "session_start", 0.0, {}),
            ("a", "feature_use", 100.0, {"feature": "templates"}),
            ("a", "feature_use", 5 * DAY, {"feature": "export"}),  # after the window
            ("a", "session_start", 4 * DAY, {}),  # came back
            ("b", "session_start", 0.0, {}),
            ("b", "feature_use", 50.0, {"feature": "export"}),
            ("b", "purchase", 60.0, {}),
            ("c", "session_start", 9 * DAY, {}),  # too recent to judge
        ]
    )
    cohort = bh.feature_cohort(frame, end_ts=10 * DAY, observe_days=2, horizon_days=7)
    assert list(cohort.user_ids) == ["a", "b"]
    col = {f: j for j, f in enumerate(cohort.feature_names)}
    assert cohort.usage[0, col["templates"]] == 1 and cohort.usage[0, col["export"]] == 0
    assert list(cohort.retained) == [1, 0]
    assert list(cohort.converted) == [0, 1]
    with pytest.raises(ValueError):
        bh.feature_cohort(frame, end_ts=10 * DAY, observe_days=7, horizon_days=2)


def test_cohort_leaves_out_users_first_seen_before_the_window():
    # A veteran active every day of the window (and long before it) is not a newcomer
    # whose first days are the window's first days; a newcomer of the window stays.
    start, end = 72 * DAY, 100 * DAY
    rows = []
    for day in range(28):
        t = start + day * DAY
        rows += [("veteran", "session_start", t, {}),
                 ("veteran", "feature_use", t + 60, {"feature": "search"})]  # fmt: skip
    rows += [("newcomer", "session_start", start + 2 * DAY, {}),
             ("newcomer", "feature_use", start + 2 * DAY + 60, {"feature": "search"}),
             ("newcomer", "session_start", start + 8 * DAY, {})]  # fmt: skip
    frame = _frame(rows)
    first_seen = {"veteran": start - 60 * DAY, "newcomer": start + 2 * DAY}
    cohort = bh.feature_cohort(frame, end_ts=end, observe_days=3, horizon_days=7,
                               first_seen=first_seen, start_ts=start)  # fmt: skip
    assert list(cohort.user_ids) == ["newcomer"]
    assert list(cohort.retained) == [1]
    # Without the history, the veteran's first event in the window would pass for a first day.
    naive = bh.feature_cohort(frame, end_ts=end, observe_days=3, horizon_days=7)
    assert "veteran" in list(naive.user_ids)


def test_cohort_windows_start_at_the_first_event_ever():
    # The user's first event (of a kind the frame does not hold) was two days before the
    # feature use: their first day is then, so the use falls outside a one-day observation.
    frame = _frame([("u", "feature_use", 2 * DAY, {"feature": "export"}),
                    ("u", "session_start", 6 * DAY, {})])  # fmt: skip
    cohort = bh.feature_cohort(frame, end_ts=20 * DAY, observe_days=1, horizon_days=7,
                               first_seen={"u": 0.0}, start_ts=0.0)  # fmt: skip
    col = {f: j for j, f in enumerate(cohort.feature_names)}
    assert cohort.usage[0, col["export"]] == 0


def test_align_states_keeps_only_common_complete_steps():
    ts, states, names = bh.align_states(
        {
            "cpu": (np.array([0.0, 300, 600, 900]), np.array([0.1, 0.2, np.nan, 0.4])),
            "traffic": (np.array([300.0, 600, 900]), np.array([10.0, 20, 30])),
        }
    )
    assert names == ("cpu", "traffic")
    assert list(ts) == [300.0, 900.0]
    assert states.tolist() == [[0.2, 10.0], [0.4, 30.0]]


def test_residual_inputs_ignore_growth_the_metrics_share():
    history = syn.make_system_history(
        days=14, seed=11, decoupled_incidents=0, weekly_job_hour=None, growth_per_day=0.04
    )
    flagged = {}
    for inputs in ("levels", "residuals"):
        fit = pp.fit_state_model(
            history.ts, history.states, history.columns, inputs=inputs, n_estimators=100
        )
        flagged[inputs] = float(np.mean(fit.holdout_scores > fit.model.threshold))
    assert flagged["residuals"] < flagged["levels"] / 3

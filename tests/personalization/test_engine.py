"""Unit tests of personalization.engine: no database, no Django settings.

Run: .venv/bin/python -m pytest tests/personalization/test_engine.py -q -p no:django --noconftest
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest
from scipy import stats

from personalization.engine.analysis import VariantSummary, analyse_experiment, arm_estimates
from personalization.engine.assignment import (
    assign_variant,
    bucket_ranges,
    choose_variant,
    fnv1a32,
    growthbook_hash,
)
from personalization.engine.calibration import (
    expected_calibration_error,
    fit_temperature,
    multiclass_brier,
    softmax_with_temperature,
)
from personalization.engine.features import (
    DAY_SECONDS,
    FEATURE_NAMES,
    EventArrays,
    extract_user_features,
)
from personalization.engine.personas import PERSONAS, PersonaModel
from personalization.engine.rules import (
    RuleSpec,
    UserContext,
    resolve_config,
    rule_matches,
    validate_conditions,
)
from personalization.engine.sequential import (
    SequentialState,
    always_valid_p_value,
    mixture_rho2,
    sequential_look,
    simulate_aa_experiments,
)
from personalization.engine.simulate import simulate_users
from personalization.engine.stats import (
    chance_to_beat_control_binomial,
    chance_to_beat_control_normal,
    holm_adjust,
    srm_check,
    t_interval,
    two_proportion_test,
    welch_test,
    wilson_interval,
)

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def _events(rows):
    """rows: (user, name, day, second_of_day, session, props)."""
    return EventArrays(
        user_id=np.array([r[0] for r in rows], dtype=object),
        name=np.array([r[1] for r in rows], dtype=object),
        ts=np.array([T0 + r[2] * DAY_SECONDS + r[3] for r in rows]),
        session_id=np.array([r[4] for r in rows], dtype=object),
        properties=[r[5] for r in rows],
    )


# --------------------------------------------------------------------------- features
class TestFeatures:
    def test_hand_built_user(self):
        rows = [
            ("u", "session_start", 0, 10, "s1", {}),
            ("u", "feature_use", 0, 20, "s1", {"feature": "search"}),
            ("u", "page_view", 0, 30, "s1", {"feature": "reports"}),
            ("u", "shortcut_used", 0, 40, "s1", {"shortcut": "k"}),
            ("u", "task_completed", 0, 50, "s1", {"duration_s": 30}),
            ("u", "goal_completed", 0, 60, "s1", {"goal": "g"}),
            ("u", "session_start", 1, 10, "s2", {}),
            ("u", "feature_use", 1, 20, "s2", {"feature": "search"}),  # revisit
            ("u", "feature_use", 1, 25, "s2", {"feature": "feed"}),
            ("u", "task_completed", 1, 50, "s2", {"duration_s": 90}),
            ("u", "task_completed", 1, 55, "s2", {"duration_s": 60}),
            ("u", "streak_day", 1, 60, "s2", {}),
            ("u", "share", 1, 70, "s2", {}),
            ("u", "comment", 1, 80, "s2", {}),
            ("u", "streak_day", 3, 60, "s3", {}),
        ]
        feats = extract_user_features(_events(rows), as_of=T0 + 5 * DAY_SECONDS)
        row = feats.row("u")
        assert row["sessions"] == 3
        assert row["active_days"] == 3
        assert row["feature_breadth"] == 3
        assert row["discovery_rate"] == pytest.approx(3 / 4)
        assert row["revisit_share"] == pytest.approx(1 / 4)  # "search" again in s2
        assert row["effective_features"] == pytest.approx(np.exp(stats.entropy([2, 1, 1])))
        assert row["shortcut_rate"] == pytest.approx(1 / 5)
        assert row["median_task_seconds"] == 60
        assert row["goals_per_session"] == pytest.approx(1 / 3)
        assert row["longest_streak_days"] == 2  # days 0 (goal) and 1 (streak); day 3 alone
        assert row["social_per_session"] == pytest.approx(2 / 3)
        assert row["recency_days"] == pytest.approx(5 - (3 + 60 / DAY_SECONDS))
        assert row["event_count"] == len(rows)

    def test_one_row_per_user_and_missing_tasks_are_nan(self):
        rows = [
            ("a", "feature_use", 0, 1, "s", {"feature": "x"}),
            ("b", "page_view", 0, 1, "t", None),
            ("a", "task_completed", 0, 9, "s", {"duration_s": "oops"}),
        ]
        feats = extract_user_features(_events(rows))
        assert list(feats.user_ids) == ["a", "b"]
        assert feats.matrix.shape == (2, len(FEATURE_NAMES))
        assert np.isnan(feats.column("median_task_seconds")).all()
        assert feats.row("b")["feature_breadth"] == 0

    def test_empty_input_and_ragged_columns(self):
        empty = EventArrays(np.array([]), np.array([]), np.array([]), np.array([]))
        assert extract_user_features(empty).matrix.shape == (0, len(FEATURE_NAMES))
        with pytest.raises(ValueError, match="same length"):
            EventArrays(np.array(["a"]), np.array([]), np.array([1.0]), np.array(["s"]))


# --------------------------------------------------------------------------- personas
@pytest.fixture(scope="module")
def population():
    train = simulate_users(40, n_casual=10, seed=11)
    test = simulate_users(30, n_casual=5, seed=13)
    return {
        name: (extract_user_features(sim.events), sim.kinds)
        for name, sim in (("train", train), ("test", test))
    }


@pytest.fixture(scope="module")
def fitted(population):
    return PersonaModel(random_state=0).fit(population["train"][0])


@pytest.fixture(scope="module")
def noisy_population():
    """Kinds that overlap a lot: where raw mixture posteriors are over-confident."""
    sims = {name: simulate_users(50, noise=0.8, seed=seed)
            for name, seed in (("train", 21), ("calib", 22), ("test", 23))}  # fmt: skip
    return {name: (extract_user_features(s.events), s.kinds) for name, s in sims.items()}


class TestPersonas:
    def test_learned_personas_recover_known_kinds(self, population, fitted):
        report = fitted.evaluate(*population["test"])
        # chance level is 0.25; each kind must mostly land on its own persona
        assert report.accuracy > 0.85
        for kind in PERSONAS:
            row = report.confusion[kind]
            assert max(row, key=row.get) == kind

    def test_users_with_too_little_data_get_no_persona(self, population, fitted):
        feats, kinds = population["test"]
        prediction = fitted.predict(feats)
        casual = [kinds[str(u)] == "casual" for u in prediction.user_ids]
        assert all(p is None for p, c in zip(prediction.persona, casual) if c)
        assert np.isnan(prediction.confidence()[np.array(casual)]).all()
        eligible = prediction.probabilities[prediction.eligible]
        np.testing.assert_allclose(eligible.sum(axis=1), 1.0)

    def test_component_naming_follows_definitions_not_component_order(self):
        sig = PersonaModel.signature_matrix()
        means = np.vstack([sig[2], sig[0], sig[3], sig[1], 0.5 * sig[0]])  # 5 components
        mapping = PersonaModel._name_components(means)
        assert list(mapping) == [2, 0, 3, 1, 0]

    def test_calibration_brings_confidence_close_to_accuracy(self, noisy_population):
        model = PersonaModel().fit(noisy_population["train"][0])
        before = model.evaluate(*noisy_population["test"])
        temperature = model.calibrate(*noisy_population["calib"])
        after = model.evaluate(*noisy_population["test"])
        assert temperature > 1  # raw mixture posteriors are over-confident here
        assert after.ece < before.ece
        assert after.brier <= before.brier
        assert after.ece < 0.1
        assert after.accuracy == pytest.approx(before.accuracy)  # a temperature never flips

    def test_too_few_users_is_an_error(self, population):
        feats, _ = population["train"]
        with pytest.raises(ValueError, match="at least"):
            PersonaModel().fit(type(feats)(feats.user_ids[:5], feats.matrix[:5], feats.names))


class TestCalibrationMetrics:
    def test_fit_temperature_recovers_the_generating_temperature(self):
        rng = np.random.default_rng(3)
        logits = rng.normal(0, 3, size=(6000, 4))
        true_t = 2.5
        probs = softmax_with_temperature(logits, true_t)
        labels = np.array([rng.choice(4, p=p) for p in probs])
        assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.1)

    def test_ece_small_when_labels_follow_the_probabilities_and_large_when_not(self):
        rng = np.random.default_rng(4)
        probs = rng.dirichlet(np.ones(4), size=5000)
        labels = np.array([rng.choice(4, p=p) for p in probs])
        assert expected_calibration_error(probs, labels) < 0.03
        sharpened = softmax_with_temperature(np.log(probs), 0.2)
        assert expected_calibration_error(sharpened, labels) > 0.15

    def test_brier_matches_definition(self):
        rng = np.random.default_rng(5)
        probs = rng.dirichlet(np.ones(3), size=50)
        labels = rng.integers(0, 3, size=50)
        onehot = np.eye(3)[labels]
        assert multiclass_brier(probs, labels) == pytest.approx(
            ((probs - onehot) ** 2).sum(axis=1).mean()
        )


# --------------------------------------------------------------------------- rules
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _rule(key, priority, action, conditions=None, **kw):
    return RuleSpec(key=key, priority=priority, conditions=conditions or {}, action=action, **kw)


class TestRules:
    def test_higher_priority_wins_conflicts_and_other_keys_survive(self):
        rules = [
            _rule("dense", 20, {"layout": {"density": "compact", "sidebar": False}}),
            _rule("base", 10, {"layout": {"density": "comfortable", "theme": "light"}}),
        ]
        out = resolve_config(rules, UserContext("u"), now=NOW)
        assert out.config == {"layout": {"density": "compact", "theme": "light", "sidebar": False}}
        assert out.provenance == {
            "layout.density": "dense",
            "layout.theme": "base",
            "layout.sidebar": "dense",
        }
        assert out.matched_rules == ["base", "dense"]

    def test_scalar_replacing_object_drops_stale_provenance(self):
        rules = [
            _rule("a", 1, {"tips": {"show": True, "count": 3}}),
            _rule("b", 2, {"tips": "off"}),
        ]
        out = resolve_config(rules, UserContext("u"), now=NOW)
        assert out.config == {"tips": "off"}
        assert out.provenance == {"tips": "b"}

    def test_inputs_are_not_mutated(self):
        action = {"layout": {"density": "compact"}}
        rules = [_rule("a", 1, action), _rule("b", 2, {"layout": {"density": "x"}})]
        resolve_config(rules, UserContext("u"), now=NOW)
        assert action == {"layout": {"density": "compact"}}

    def test_conditions(self):
        ctx = UserContext(
            "u",
            persona="optimizer",
            persona_confidence=0.7,
            segments=frozenset({"power"}),
            attributes={"plan": "pro", "age_days": 40},
            variants={"checkout": "treatment"},
        )
        assert rule_matches({}, ctx)
        assert rule_matches({"persona": ["optimizer", "explorer"]}, ctx)
        assert not rule_matches({"persona": "explorer"}, ctx)
        assert rule_matches({"min_confidence": 0.6}, ctx)
        assert not rule_matches({"min_confidence": 0.8}, ctx)
        assert rule_matches({"segment": ["x", "power"]}, ctx)
        assert not rule_matches({"segment": ["x"]}, ctx)
        assert rule_matches({"attributes": {"plan": "pro", "age_days": {"gte": 30}}}, ctx)
        assert not rule_matches({"attributes": {"age_days": {"lt": 30}}}, ctx)
        assert rule_matches({"attributes": {"country": {"exists": False}}}, ctx)
        assert not rule_matches({"attributes": {"country": {"in": ["DE"]}}}, ctx)
        assert rule_matches({"variant": {"checkout": ["treatment"]}}, ctx)
        assert not rule_matches({"variant": {"checkout": "control"}}, ctx)

    def test_disabled_and_out_of_window_rules_do_not_apply(self):
        rules = [
            _rule("off", 1, {"a": 1}, enabled=False),
            _rule("future", 1, {"b": 1}, starts_at=NOW + timedelta(days=1)),
            _rule("past", 1, {"c": 1}, ends_at=NOW),
            _rule(
                "live", 1, {"d": 1}, starts_at=NOW - timedelta(days=1), ends_at=NOW + timedelta(1)
            ),
        ]
        assert resolve_config(rules, UserContext("u"), now=NOW).config == {"d": 1}

    def test_validation_names_the_problem(self):
        assert validate_conditions({"persona": ["optimizer"]}, personas=PERSONAS) == []
        errors = validate_conditions(
            {"persona": ["wizard"], "colour": 1, "min_confidence": 2,
             "attributes": {"age": {"between": 1}}},
            personas=PERSONAS,
        )  # fmt: skip
        text = " | ".join(errors)
        for fragment in ("wizard", "colour", "min_confidence", "between"):
            assert fragment in text
        assert validate_conditions([]) == ["must be a JSON object"]

    @pytest.mark.parametrize(
        ("conditions", "fragment"),
        [
            ({"segment": [{"a": 1}]}, "segment"),
            ({"segment": {"a": 1}}, "segment"),
            ({"segment": 3}, "segment"),
            ({"persona": [["optimizer"]]}, "persona"),
            ({"variant": {"checkout": [{"b": 1}]}}, "variant 'checkout'"),
            ({"attributes": {"country": {"in": "DE"}}}, "in needs a list"),
            ({"attributes": {"age": {"gte": "thirty"}}}, "gte needs a number"),
            ({"attributes": {"age": {"lt": True}}}, "lt needs a number"),
            ({"attributes": {"plan": {"exists": "yes"}}}, "exists needs true or false"),
            ({"min_confidence": True}, "min_confidence"),
        ],
    )
    def test_validation_checks_the_type_of_each_condition_value(self, conditions, fragment):
        errors = validate_conditions(conditions, personas=PERSONAS)
        assert any(fragment in e for e in errors), errors

    def test_well_typed_conditions_stay_valid(self):
        conditions = {
            "persona": "optimizer",
            "segment": ["power_user"],
            "attributes": {"plan": "pro", "country": {"in": ["DE"]}, "age": {"gte": 30},
                           "team": {"exists": True}},
            "variant": {"checkout": "b", "search": ["a", "b"]},
        }  # fmt: skip
        assert validate_conditions(conditions, personas=PERSONAS) == []

    def test_a_rule_that_cannot_be_evaluated_is_skipped_not_fatal(self, caplog):
        rules = [
            _rule("broken", 50, {"broken": True}, {"segment": [{"a": 1}]}),
            _rule("fine", 10, {"fine": True}),
        ]
        ctx = UserContext("u", segments=frozenset({"power_user"}))
        out = resolve_config(rules, ctx, now=NOW)
        assert out.config == {"fine": True} and out.matched_rules == ["fine"]
        assert "broken" in caplog.text


# --------------------------------------------------------------------------- assignment
# Verbatim from GrowthBook's shared SDK test cases (cases.json): [seed, value, version, expected].
GROWTHBOOK_HASH_CASES = [
    ("", "a", 1, 0.22),
    ("", "b", 1, 0.077),
    ("b", "a", 1, 0.946),
    ("ef", "d", 1, 0.652),
    ("asdf", "8952klfjas09ujk", 1, 0.549),
    ("", "123", 1, 0.011),
    ("", '___)((*":&', 1, 0.563),
    ("seed", "a", 2, 0.0505),
    ("seed", "b", 2, 0.2696),
    ("foo", "ab", 2, 0.2575),
    ("foo", "def", 2, 0.2019),
    ("89123klj", "8952klfjas09ujkasdf", 2, 0.124),
    ("90850943850283058242805", "123", 2, 0.7516),
    ("()**(%$##$%#$#", '___)((*":&', 2, 0.0128),
]


class TestAssignment:
    def test_fnv1a_reference_values(self):
        # Landon Curt Noll's FNV test suite
        assert fnv1a32("") == 0x811C9DC5
        assert fnv1a32("a") == 0xE40C292C
        assert fnv1a32("foobar") == 0xBF9CF968

    @pytest.mark.parametrize(("seed", "value", "version", "expected"), GROWTHBOOK_HASH_CASES)
    def test_growthbook_hash_cases(self, seed, value, version, expected):
        assert growthbook_hash(seed, value, version) == pytest.approx(expected)

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            ((2, 1, None), [(0, 0.5), (0.5, 1)]),
            ((2, 0.5, None), [(0, 0.25), (0.5, 0.75)]),
            ((3, 0.2, [0.2, 0.3, 0.5]), [(0, 0.04), (0.2, 0.26), (0.5, 0.6)]),
            ((2, 1, [0.4, 0.1]), [(0, 0.5), (0.5, 1)]),  # weights not summing to 1: equal
        ],
    )
    def test_bucket_ranges(self, args, expected):
        got = bucket_ranges(*args)
        np.testing.assert_allclose(np.array(got), np.array(expected), atol=1e-9)

    def test_choose_variant_outside_coverage(self):
        ranges = bucket_ranges(2, 0.5)
        assert choose_variant(0.1, ranges) == 0
        assert choose_variant(0.3, ranges) == -1
        assert choose_variant(0.6, ranges) == 1

    def test_sticky_and_follows_weights(self):
        users = [f"user-{i}" for i in range(20_000)]
        variants = ["control", "a", "b"]
        weights = [0.5, 0.3, 0.2]
        first = [assign_variant(experiment_key="exp", user_id=u, variants=variants,
                                weights=weights) for u in users]  # fmt: skip
        again = [assign_variant(experiment_key="exp", user_id=u, variants=variants,
                                weights=weights) for u in users]  # fmt: skip
        assert first == again
        counts = [first.count(v) for v in variants]
        assert srm_check(counts, weights).p_value > 0.001

    def test_experiments_are_independent(self):
        users = [str(i) for i in range(10_000)]
        one = [assign_variant(experiment_key="one", user_id=u, variants=["c", "t"]) for u in users]
        two = [assign_variant(experiment_key="two", user_id=u, variants=["c", "t"]) for u in users]
        table = np.array([[sum(a == x and b == y for a, b in zip(one, two)) for y in "ct"]
                          for x in "ct"])  # fmt: skip
        assert stats.chi2_contingency(table).pvalue > 0.001

    def test_coverage_leaves_users_out(self):
        got = [assign_variant(experiment_key="cov", user_id=str(i), variants=["c", "t"],
                              coverage=0.3) for i in range(10_000)]  # fmt: skip
        assert abs(sum(g is not None for g in got) / len(got) - 0.3) < 0.03


# --------------------------------------------------------------------------- statistics
class TestFrequentist:
    def test_two_proportion_matches_scipy_chi_square(self):
        rng = np.random.default_rng(6)
        for _ in range(20):
            n_a, n_b = rng.integers(200, 5000, size=2)
            c_a, c_b = rng.binomial(n_a, 0.1), rng.binomial(n_b, 0.12)
            res = two_proportion_test(c_a, n_a, c_b, n_b)
            table = np.array([[c_a, n_a - c_a], [c_b, n_b - c_b]])
            chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
            assert res.p_value == pytest.approx(p, rel=1e-9)
            assert res.statistic**2 == pytest.approx(chi2, rel=1e-9)

    def test_proportion_intervals_cover_the_truth(self):
        rng = np.random.default_rng(7)
        p_a, p_b, n = 0.10, 0.12, 3000
        diff_hits = lift_hits = 0
        for _ in range(800):
            res = two_proportion_test(rng.binomial(n, p_a), n, rng.binomial(n, p_b), n)
            diff_hits += res.difference_ci.contains(p_b - p_a)
            lift_hits += res.relative_lift_ci.contains(p_b / p_a - 1)
        assert 0.93 < diff_hits / 800 < 0.97
        assert 0.93 < lift_hits / 800 < 0.97

    def test_welch_matches_scipy(self):
        rng = np.random.default_rng(8)
        a = rng.lognormal(3.0, 1.0, size=400)
        b = rng.lognormal(3.1, 1.3, size=650)
        res = welch_test(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
        ref = stats.ttest_ind(b, a, equal_var=False)
        ci = ref.confidence_interval(0.95)
        assert res.statistic == pytest.approx(ref.statistic, rel=1e-9)
        assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert res.df == pytest.approx(ref.df, rel=1e-9)
        assert res.difference_ci.lower == pytest.approx(ci.low, rel=1e-9)
        assert res.difference_ci.upper == pytest.approx(ci.high, rel=1e-9)

    def test_welch_relative_lift_interval_covers_the_truth(self):
        rng = np.random.default_rng(9)
        hits = 0
        for _ in range(600):
            a = rng.exponential(10.0, size=500)
            b = rng.exponential(11.0, size=500)
            res = welch_test(a.mean(), a.var(ddof=1), 500, b.mean(), b.var(ddof=1), 500)
            hits += res.relative_lift_ci.contains(0.1)
        assert 0.92 < hits / 600 < 0.975

    def test_bad_arm_sizes_raise(self):
        with pytest.raises(ValueError):
            two_proportion_test(0, 0, 1, 10)
        with pytest.raises(ValueError):
            welch_test(1.0, 1.0, 1, 1.0, 1.0, 10)

    def test_srm_matches_scipy_and_flags_a_broken_split(self):
        res = srm_check([10_200, 9_800], [0.5, 0.5])
        assert res.p_value == pytest.approx(stats.chisquare([10_200, 9_800]).pvalue)
        assert not res.mismatch
        assert srm_check([10_500, 9_500], [0.5, 0.5]).mismatch
        assert not srm_check([6_020, 3_980], [0.6, 0.4]).mismatch

    def test_holm_against_the_step_down_definition(self):
        rng = np.random.default_rng(10)
        for _ in range(200):
            p = rng.uniform(0, 0.1, size=rng.integers(1, 6))
            adjusted = holm_adjust(p)
            for alpha in (0.01, 0.05):
                # step-down: walk sorted p-values, reject while p_(k) <= alpha / (m - k)
                rejected = set()
                for k, i in enumerate(np.argsort(p)):
                    if p[i] > alpha / (len(p) - k):
                        break
                    rejected.add(int(i))
                assert rejected == set(np.flatnonzero(adjusted <= alpha).tolist())
            assert (adjusted >= p).all() and (adjusted <= 1).all()


class TestBayesian:
    @pytest.mark.parametrize(("ca", "na", "cb", "nb"), [(30, 300, 42, 310), (5, 50, 3, 40),
                                                        (400, 4000, 400, 4000)])  # fmt: skip
    def test_chance_to_beat_control_matches_monte_carlo(self, ca, na, cb, nb):
        rng = np.random.default_rng(11)
        draws_a = rng.beta(1 + ca, 1 + na - ca, size=400_000)
        draws_b = rng.beta(1 + cb, 1 + nb - cb, size=400_000)
        exact = chance_to_beat_control_binomial(ca, na, cb, nb)
        assert exact == pytest.approx((draws_b > draws_a).mean(), abs=0.004)

    def test_complementary_and_normal_approximation_agrees_at_scale(self):
        p_ab = chance_to_beat_control_binomial(120, 1000, 140, 1000)
        p_ba = chance_to_beat_control_binomial(140, 1000, 120, 1000)
        assert p_ab + p_ba == pytest.approx(1.0, abs=1e-6)
        big = chance_to_beat_control_binomial(20_000, 200_000, 20_300, 200_000)
        exactish = chance_to_beat_control_binomial(2_000, 20_000, 2_030, 20_000)
        assert 0.5 < exactish < big < 1.0  # more data, same rates: more certain

    def test_normal_chance(self):
        assert chance_to_beat_control_normal(10, 1, 10, 1) == 0.5
        assert chance_to_beat_control_normal(10, 0.3, 11, 0.4) == pytest.approx(
            stats.norm.cdf(1 / 0.5)
        )


class TestSequential:
    def test_aa_daily_peeking_keeps_false_positives_below_alpha(self):
        sim = simulate_aa_experiments(n_experiments=1500, days=21, users_per_day=150, seed=1)
        # binomial standard error of the rate at alpha is ~0.0056: allow 2 of them
        assert sim.sequential_false_positive_rate <= sim.alpha + 0.011
        assert sim.naive_peeking_false_positive_rate > 2 * sim.alpha  # the problem it solves

    def test_confidence_sequence_covers_the_true_effect_at_every_look(self):
        rng = np.random.default_rng(12)
        true_diff, misses = 1.0, 0
        for _ in range(300):
            state = SequentialState()
            a, b = rng.normal(10, 5, size=(20, 100)), rng.normal(11, 5, size=(20, 100))
            for day in range(1, 21):
                xa, xb = a[:day].ravel(), b[:day].ravel()
                var = xa.var(ddof=1) / xa.size + xb.var(ddof=1) / xb.size
                look = sequential_look(xb.mean() - xa.mean(), var, xa.size + xb.size,
                                       n_planned=4000, previous=state)  # fmt: skip
                state = look.state
            misses += not look.ci.contains(true_diff)
        assert misses / 300 <= 0.05

    def test_running_state_only_tightens(self):
        state, looks = SequentialState(), []
        rng = np.random.default_rng(13)
        for n in range(100, 2100, 100):
            est = 0.3 + rng.normal(0, 1 / np.sqrt(n))
            look = sequential_look(est, 2 / n, 2 * n, previous=state)
            state = look.state
            looks.append(look)
        p = [lk.p_value for lk in looks]
        widths = [lk.ci.upper - lk.ci.lower for lk in looks]
        assert all(x >= y for x, y in pairwise(p))
        assert all(x >= y for x, y in pairwise(widths))
        assert looks[-1].significant  # a real effect of 0.3 sd is found

    def test_sequential_is_wider_than_fixed_horizon_at_the_same_data(self):
        rho2 = mixture_rho2(0.05, 1000)
        from personalization.engine.sequential import confidence_halfwidth

        assert confidence_halfwidth(1.0, 1000, rho2, 0.05) > stats.norm.ppf(0.975)
        # and its p-value is larger than the fixed-horizon one for the same z
        assert always_valid_p_value(2.5, 1000, rho2) > 2 * stats.norm.sf(2.5)


class TestArmIntervals:
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion:
    # comparison of seven methods", Stat. Med. 17:857-872, Table I, method 3 (score
    # interval without continuity correction), published to four decimals.
    @pytest.mark.parametrize(
        "successes, n, lower, upper",
        [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
         (1, 29, 0.0061, 0.1718)],
    )  # fmt: skip
    def test_wilson_matches_newcombes_published_values(self, successes, n, lower, upper):
        ci = wilson_interval(successes, n, alpha=0.05)
        assert ci.lower == pytest.approx(lower, abs=5e-5)
        assert ci.upper == pytest.approx(upper, abs=5e-5)

    def test_wilson_matches_scipy_at_other_levels(self):
        for k, n, alpha in [(3, 7, 0.1), (0, 1, 0.05), (999, 1000, 0.01), (40, 400, 0.2)]:
            ref = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
            ci = wilson_interval(k, n, alpha=alpha)
            assert ci.lower == pytest.approx(ref.low, abs=1e-12)
            assert ci.upper == pytest.approx(ref.high, abs=1e-12)

    def test_wilson_keeps_its_coverage_where_wald_loses_it(self):
        # Exact coverage (sum of binomial probabilities of the k whose interval holds p),
        # averaged over small true rates at n = 50: the regime of an arm's first days.
        n, wilson, wald = 50, [], []
        ks = np.arange(n + 1)
        for p in np.linspace(0.02, 0.3, 29):
            pmf = stats.binom.pmf(ks, n, p)
            wilson.append(sum(w * wilson_interval(k, n).contains(p) for k, w in zip(ks, pmf)))
            half = 1.959964 * np.sqrt(ks / n * (1 - ks / n) / n)
            wald.append(float(np.sum(pmf * (np.abs(ks / n - p) <= half))))
        assert 0.93 < np.mean(wilson) < 0.97
        assert np.mean(wald) < np.mean(wilson) - 0.02

    def test_t_interval_matches_students_sleep_data(self):
        # Student (1908) / Cushny & Peebles: extra hours of sleep, drug 2 minus drug 1 on
        # the same ten patients; R's t.test(extra ~ group, sleep, paired = TRUE) gives the
        # 95% interval 0.7001142 to 2.4598858 for the mean difference 1.58.
        d = np.array([1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4])
        ci = t_interval(d.mean(), d.var(ddof=1), d.size)
        assert ci.lower == pytest.approx(0.7001142, abs=1e-7)
        assert ci.upper == pytest.approx(2.4598858, abs=1e-7)

    def test_t_interval_matches_scipy_and_covers_the_truth(self):
        rng = np.random.default_rng(15)
        x = rng.exponential(4.0, size=37)
        ref = stats.ttest_1samp(x, 0.0).confidence_interval(0.9)
        ci = t_interval(x.mean(), x.var(ddof=1), x.size, alpha=0.1)
        assert (ci.lower, ci.upper) == pytest.approx((ref.low, ref.high), rel=1e-12)
        hits = sum(
            t_interval((y := rng.normal(3.0, 2.0, 12)).mean(), y.var(ddof=1), 12).contains(3.0)
            for _ in range(2000)
        )
        assert 0.94 < hits / 2000 < 0.96

    def test_bad_sizes_raise(self):
        with pytest.raises(ValueError):
            wilson_interval(0, 0)
        with pytest.raises(ValueError):
            wilson_interval(5, 4)
        with pytest.raises(ValueError):
            t_interval(1.0, 1.0, 1)

    def test_arms_from_summaries_follow_the_metric_kind(self):
        rng = np.random.default_rng(16)
        a, b = rng.gamma(2, 5, size=300), rng.gamma(2, 6, size=250)
        summaries = [VariantSummary("c", a.size, a.sum(), (a**2).sum()),
                     VariantSummary("t", b.size, b.sum(), (b**2).sum())]  # fmt: skip
        out = analyse_experiment(summaries, weights=[0.5, 0.5], metric_kind="mean", alpha=0.1)
        for arm, x in zip(out.arms, (a, b), strict=True):
            ref = stats.ttest_1samp(x, 0.0).confidence_interval(0.9)
            assert arm.method == "t" and arm.users == x.size
            assert arm.value == pytest.approx(x.mean(), rel=1e-12)
            assert (arm.ci.lower, arm.ci.upper) == pytest.approx((ref.low, ref.high), rel=1e-9)
        conv = [VariantSummary("c", 263, 81), VariantSummary("t", 148, 15)]
        out = analyse_experiment(conv, weights=[0.5, 0.5], metric_kind="conversion")
        assert [a.value for a in out.arms] == [81 / 263, 15 / 148]
        assert out.arms[0].ci == wilson_interval(81, 263)
        assert out.to_dict()["arms"][1]["ci"]["upper"] == wilson_interval(15, 148).upper

    def test_arms_too_small_to_estimate_have_no_interval(self):
        tiny = [VariantSummary("c", 0, 0), VariantSummary("t", 1, 1, 1)]
        conv = arm_estimates(tiny, metric_kind="conversion")
        assert conv[0].value is None and conv[0].ci is None
        assert conv[1].value == 1.0 and conv[1].ci.lower > 0  # one user already says something
        mean = arm_estimates(tiny, metric_kind="mean")
        assert mean[0].value is None and mean[1].value == 1.0 and mean[1].ci is None
        with pytest.raises(ValueError):
            arm_estimates(tiny, metric_kind="median")


class TestExperimentAnalysis:
    def test_three_arms_with_holm_and_json_output(self):
        summaries = [
            VariantSummary("control", 5000, 500),
            VariantSummary("a", 5000, 560),
            VariantSummary("b", 5000, 505),
        ]
        out = analyse_experiment(summaries, weights=[1, 1, 1], metric_kind="conversion")
        assert [c.variant for c in out.comparisons] == ["a", "b"]
        raw = [c.fixed.p_value for c in out.comparisons]
        np.testing.assert_allclose([c.p_value_holm for c in out.comparisons], holm_adjust(raw))
        assert out.comparisons[0].chance_to_beat_control > out.comparisons[1].chance_to_beat_control
        assert not out.srm.mismatch
        json.dumps(out.to_dict())

    def test_mean_metric_uses_welch_from_sums(self):
        rng = np.random.default_rng(14)
        a, b = rng.gamma(2, 5, size=800), rng.gamma(2, 5.5, size=900)
        summaries = [VariantSummary("c", a.size, a.sum(), (a**2).sum()),
                     VariantSummary("t", b.size, b.sum(), (b**2).sum())]  # fmt: skip
        out = analyse_experiment(summaries, weights=[0.5, 0.5], metric_kind="mean")
        ref = stats.ttest_ind(b, a, equal_var=False)
        assert out.comparisons[0].fixed.p_value == pytest.approx(ref.pvalue, rel=1e-6)

    def test_srm_is_reported(self):
        summaries = [VariantSummary("c", 6000, 600), VariantSummary("t", 4000, 400)]
        assert analyse_experiment(
            summaries, weights=[0.5, 0.5], metric_kind="conversion"
        ).srm.mismatch

    def test_rejects_bad_input(self):
        with pytest.raises(ValueError):
            analyse_experiment([VariantSummary("c", 10, 1)], weights=[1], metric_kind="conversion")
        with pytest.raises(ValueError):
            analyse_experiment(
                [VariantSummary("c", 10, 1), VariantSummary("t", 10, 1)],
                weights=[1, 1],
                metric_kind="median",
            )

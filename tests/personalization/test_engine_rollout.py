"""Percentage rollout (``engine.rollout``): deterministic, monotone, the right share, and
independent of the variant the user was bucketed into. No database.

Run: .venv/bin/python -m pytest tests/personalization/test_engine_rollout.py -q -p no:django --noconftest
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from personalization.engine.assignment import assign_variant, growthbook_hash
from personalization.engine.rollout import (
    in_rollout,
    ramp_errors,
    ramp_next_percent,
    rollout_percent_error,
    rollout_percent_parse,
    rollout_position,
    rollout_seed,
)

KEY = "checkout-redesign"
N = 100_000
# Uniform ids are the easy case for a hash; real ids also look like these.
IDS = [f"user-{i}" for i in range(N // 2)] + [f"auth0|5f7c{i:08x}" for i in range(N // 2)]


@pytest.fixture(scope="module")
def positions() -> np.ndarray:
    return np.array([rollout_position(experiment_key=KEY, user_id=u) for u in IDS])


def test_in_rollout_is_the_position_below_the_percentage(positions):
    for i in range(0, N, 997):
        for percent in (0.5, 10, 33.3, 50, 99.99):
            expected = bool(positions[i] < percent / 100)
            assert in_rollout(experiment_key=KEY, user_id=IDS[i], percent=percent) is expected
    assert all(in_rollout(experiment_key=KEY, user_id=u, percent=100) for u in IDS[:1000])
    assert not any(in_rollout(experiment_key=KEY, user_id=u, percent=0) for u in IDS[:1000])


def test_monotone_a_user_in_at_a_percentage_stays_in_at_every_higher_one():
    percents = [0, 0.01, 1, 5, 10, 12.5, 25, 50, 50.01, 75, 99, 100]
    for user in IDS[::50]:
        inside = [in_rollout(experiment_key=KEY, user_id=user, percent=p) for p in percents]
        # Once in, never out again as the percentage grows.
        assert inside == sorted(inside), (user, list(zip(percents, inside, strict=True)))


def test_the_share_in_is_the_percentage_within_binomial_bounds(positions):
    # Four standard errors of a binomial share plus the 1/10,000 grid of positions.
    for percent in (0.1, 1, 10, 12.5, 33.3, 50, 90, 99.9):
        p = percent / 100
        share = float(np.mean(positions < p))
        bound = 4 * math.sqrt(p * (1 - p) / N) + 1e-4
        assert abs(share - p) <= bound, (percent, share, bound)


def test_membership_is_independent_of_the_variant_the_user_was_bucketed_into(positions):
    variants = np.array(
        [assign_variant(experiment_key=KEY, user_id=u, variants=["control", "b"]) for u in IDS]
    )
    control = variants == "control"
    for percent in (10, 50):
        inside = positions < percent / 100
        table = [
            [np.sum(inside & control), np.sum(~inside & control)],
            [np.sum(inside & ~control), np.sum(~inside & ~control)],
        ]
        assert stats.chi2_contingency(table, correction=False).pvalue > 0.001, (percent, table)
        # In words: each arm sends its share of users, not all of one arm.
        assert abs(inside[control].mean() - inside[~control].mean()) < 0.02
    # Finer: the two positions on a 10 x 10 grid look like independent uniforms.
    bucketing = np.array([growthbook_hash(KEY, u) for u in IDS])
    grid = np.histogram2d(positions, bucketing, bins=10, range=[[0, 1], [0, 1]])[0]
    assert stats.chi2_contingency(grid).pvalue > 0.001
    assert abs(stats.pearsonr(positions, bucketing).statistic) < 0.02


def test_without_the_salt_the_check_above_would_fail():
    """The independence test has teeth: the bucketing hash cut at 50 % is exactly the
    control of a 50/50 experiment, which is what an unsalted rollout would have served."""
    ids = IDS[:5000]
    unsalted = np.array([growthbook_hash(KEY, u) < 0.5 for u in ids])
    control = np.array(
        [assign_variant(experiment_key=KEY, user_id=u, variants=["control", "b"]) == "control"
         for u in ids]
    )  # fmt: skip
    assert (unsalted == control).all()
    salted = np.array([in_rollout(experiment_key=KEY, user_id=u, percent=50) for u in ids])
    assert 0.4 < (salted == control).mean() < 0.6
    assert rollout_seed(KEY) != KEY


def test_deterministic_and_different_per_experiment():
    user = "u-42"
    first = rollout_position(experiment_key=KEY, user_id=user)
    assert rollout_position(experiment_key=KEY, user_id=user) == first
    others = {rollout_position(experiment_key=f"exp-{i}", user_id=user) for i in range(50)}
    assert len(others) > 40  # one experiment's early users are not every experiment's


@pytest.mark.parametrize(
    "value, ok",
    [(0, True), (100, True), (12.5, True), (-0.01, False), (100.5, False), (True, False),
     ("50", False), (None, False), (float("nan"), False), (float("inf"), False)],
)  # fmt: skip
def test_percent_check(value, ok):
    assert (rollout_percent_error(value) is None) is ok


@pytest.mark.parametrize("text, value", [("50", 50.0), (" 12.5 ", 12.5), ("10%", 10.0), ("0", 0.0)])
def test_percent_parse_accepts_numbers(text, value):
    assert rollout_percent_parse(text) == (value, None)


@pytest.mark.parametrize("text", ["abc", "", "nan", "1e999", "-5", "101"])
def test_percent_parse_refuses_the_rest_saying_why(text):
    value, error = rollout_percent_parse(text)
    assert value is None and "between 0 and 100" in error


def test_a_ramp_steps_up_to_100_and_never_past_it():
    steps, percent = [], 10.0
    while percent < 100:
        percent = ramp_next_percent(percent, 25)
        steps.append(percent)
    assert steps == [35, 60, 85, 100]


@pytest.mark.parametrize(
    "step, hours, fields",
    [(None, None, set()), (10, 6, set()), (100, 0.25, set()), (10, None, {"ramp_every_hours"}),
     (None, 6, {"ramp_step_percent"}), (0, 6, {"ramp_step_percent"}),
     (101, 6, {"ramp_step_percent"}), (True, 6, {"ramp_step_percent"}),
     (10, 0.1, {"ramp_every_hours"}), (10, 721, {"ramp_every_hours"}),
     (float("nan"), float("inf"), {"ramp_step_percent", "ramp_every_hours"})],
)  # fmt: skip
def test_ramp_check_names_the_bad_field(step, hours, fields):
    assert set(ramp_errors(step, hours)) == fields

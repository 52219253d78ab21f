"""The evidence-ranking stage, the time-based alert pause and escalation through it."""

from __future__ import annotations

import numpy as np
import pytest

from anomalies.engine import DetectorConfig, StreamingDetector, score_series
from anomalies.engine.evidence import EDGES, EvidenceRanker

HOUR = 3600.0


def _feed(ranker: EvidenceRanker, values: np.ndarray) -> np.ndarray:
    out = np.zeros(values.shape[0])
    for i, v in enumerate(values):
        out[i] = ranker.surprisal_and_update(np.array([v]), np.array([True]))[0]
    return out


def test_rank_is_the_share_of_past_evidence_at_least_as_large():
    ranker = EvidenceRanker(1, span=1e12, record_bonus=0.0)
    # 999 points spread over the bins, then a probe equal to a bin's lower edge: exactly
    # the points in that bin and above count as "at least as large".
    past = np.repeat(EDGES[10:20], 100)[:999]
    _feed(ranker, past)
    probe = EDGES[18]
    expected_at_least = np.sum(past >= probe)
    got = ranker.surprisal_and_update(np.array([probe]), np.array([True]))[0]
    assert np.isclose(got, -np.log10((expected_at_least + 1) / (999 + 1)), atol=1e-9)


def test_a_record_earns_a_bonus_per_doubling_and_forgetting_shrinks_the_history():
    plain = EvidenceRanker(1, span=1e12, record_bonus=0.0)
    bonus = EvidenceRanker(1, span=1e12, record_bonus=1.0)
    history = np.full(500, EDGES[20])
    _feed(plain, history)
    _feed(bonus, history)
    top_edge = EDGES[21]
    probe = np.array([top_edge * 8.0])
    gap = bonus.surprisal_and_update(probe, np.array([True]))[0] - plain.surprisal_and_update(
        probe, np.array([True])
    )
    assert np.isclose(gap, 3.0)

    short, long = EvidenceRanker(1, 200.0, 0.0), EvidenceRanker(1, 1e6, 0.0)
    _feed(short, history)
    _feed(long, history)
    assert short.held[0] < 250 < long.held[0]


def test_rows_that_do_not_learn_are_left_alone():
    ranker = EvidenceRanker(2, span=100.0, record_bonus=0.5)
    out = ranker.surprisal_and_update(np.array([5.0, 5.0]), np.array([True, False]))
    assert out[1] == 0.0 and ranker.held[1] == 0.0 and ranker.counts[1].sum() == 0.0
    assert ranker.held[0] == 1.0


def test_bursty_and_quiet_series_alert_at_similar_low_rates():
    """The point of ranking: one alert level means the same on a Pareto-tailed counter."""
    rng = np.random.default_rng(7)
    n = 6000
    ts = 1_700_000_000.0 + 300.0 * np.arange(n)
    quiet = 50.0 + rng.normal(0, 1, n)
    bursty = 50.0 * (1.0 + rng.pareto(1.5, n))
    cfg = DetectorConfig()
    for values in (quiet, bursty):
        scores = score_series(ts, values)
        assert np.mean(scores[cfg.burn_in :] >= cfg.alert_score) < 0.003


def test_the_alert_pause_is_a_time_span_whatever_the_sampling_step():
    rng = np.random.default_rng(3)
    n = 1500  # hourly: two months
    ts = 1_700_000_000.0 + HOUR * np.arange(n)
    values = 100.0 + rng.normal(0, 1, n)
    values[1000] += 30.0
    # 30 hours later (after a one-day pause, long before 300 points) and a little larger,
    # so that it is not a mere repeat of what the series has already shown.
    values[1030] += 40.0
    scores = score_series(ts, values)
    alert = DetectorConfig().alert_score
    assert scores[1000] >= alert and scores[1030] >= alert
    paused = score_series(ts, values, DetectorConfig(cooldown_seconds=3 * 86400))
    assert paused[1030] < alert


def test_a_much_stronger_incident_inside_the_pause_alerts_a_similar_one_does_not():
    rng = np.random.default_rng(5)
    n = 1500
    ts = 1_700_000_000.0 + 300.0 * np.arange(n)
    base = 100.0 + rng.normal(0, 1, n)
    similar, worse = base.copy(), base.copy()
    for v in (similar, worse):
        v[1000] += 20.0
    similar[1100] += 20.0
    worse[1100:1110] += 200.0  # eight hours later, well inside the one-day pause
    alert = DetectorConfig().alert_score
    assert score_series(ts, similar)[1100] < alert
    assert score_series(ts, worse)[1100] >= alert
    assert score_series(ts, worse, DetectorConfig(escalation=0.0))[1100] < alert


def test_a_sustained_incident_after_a_blip_alerts_inside_the_pause():
    # A one-point blip opens the pause; an hour-long shift eight hours later is, point by
    # point, no more than twice as abnormal as the blip, but it lasts: that is a new incident.
    rng = np.random.default_rng(5)
    n = 1500
    ts = 1_700_000_000.0 + 300.0 * np.arange(n)
    values = 100.0 + rng.normal(0, 1, n)
    values[1000] += 9.0
    values[1100:1112] += 15.0
    cfg = DetectorConfig()
    result = StreamingDetector(1).update(ts[None, :], values[None, :])
    bar = result.total[0, 1000]
    assert result.scores[0, 1000] >= cfg.alert_score
    assert result.total[0, 1100:1112].max() < cfg.escalation * bar  # not "much larger"
    assert result.scores[0, 1100:1112].max() >= cfg.alert_score
    without = score_series(ts, values, DetectorConfig(escalation_run=0))
    assert without[1100:1112].max() < cfg.alert_score
    # The run is counted across calls: split in the middle of it, the scores are the same.
    det = StreamingDetector(1)
    head = det.update(ts[None, :1103], values[None, :1103]).scores[0]
    det = StreamingDetector.from_states([det.series_state(0)], det.fleet_state())
    tail = det.update(ts[None, 1103:], values[None, 1103:]).scores[0]
    np.testing.assert_allclose(np.concatenate([head, tail]), result.scores[0], atol=1e-6)


def test_state_round_trip_keeps_the_evidence_history():
    rng = np.random.default_rng(1)
    ts = 1_700_000_000.0 + 300.0 * np.arange(800)
    values = 10.0 + rng.normal(0, 1, 800)
    values[700] += 12.0
    whole = StreamingDetector(1).update(ts[None, :], values[None, :]).scores[0]
    first = StreamingDetector(1)
    first.update(ts[None, :600], values[None, :600])
    restored = StreamingDetector.from_states([first.series_state(0)], first.fleet_state())
    rest = restored.update(ts[None, 600:], values[None, 600:]).scores[0]
    assert np.allclose(rest, whole[600:], atol=1e-6)
    assert restored.ranker.held[0] > 0


def test_the_first_points_do_not_leave_a_phantom_spike_in_their_hour_of_the_week():
    # Regression: the weekly correction learned the first point's miss against a level of
    # 0, and replayed it in the same hour-of-week slot every week after.
    rng = np.random.default_rng(3)
    n = 24 * 7 * 4
    ts = 1_700_000_000.0 + HOUR * np.arange(n)
    values = 100.0 + rng.normal(0, 1, n)
    result = StreamingDetector(1).update(ts[None, :], values[None, :])
    weekly = result.total[0, 168 * 2 :: 168]
    assert weekly.max() < 5.0
    assert np.abs(result.expected[0, 336:] - 100.0).max() < 5.0


def test_the_surge_view_tracks_the_median_and_mad_of_the_series():
    from anomalies.engine.statistical import MAD_TO_SD, new_statistical_state, surge_statistic

    rng = np.random.default_rng(11)
    values = 40.0 + 3.0 * rng.standard_normal(6000)
    cfg = DetectorConfig()
    state = new_statistical_state(1)
    floor = np.full(1, 1e-9)
    for i, v in enumerate(values):
        surge_statistic(state, np.array([v]), np.array([True]), np.array([float(i)]), floor, cfg)
    assert abs(state["robust_median"][0] - 40.0) < 0.3
    assert abs(MAD_TO_SD * state["robust_mad"][0] - 3.0) < 0.45


def test_the_surge_view_keeps_its_anchor_through_a_sustained_shift():
    """A two-sigma shift holds at two MADs for hours: the anchor moves at a weekly pace."""
    from anomalies.engine.statistical import new_statistical_state, surge_statistic

    rng = np.random.default_rng(13)
    cfg = DetectorConfig()
    state = new_statistical_state(1)
    floor = np.full(1, 1e-9)
    warm = 40.0 + 3.0 * rng.standard_normal(6000)
    for i, v in enumerate(warm):
        surge_statistic(state, np.array([v]), np.array([True]), np.array([float(i)]), floor, cfg)
    anchor = state["robust_median"][0]
    z = [
        surge_statistic(
            state, np.array([46.0]), np.array([True]), np.array([6000.0 + i]), floor, cfg
        )[0]
        for i in range(36)  # three hours at five minutes
    ]
    assert z[0] < 1.0 < z[3]
    assert all(abs(x - 2.0) < 0.5 for x in z[12:])
    assert abs(state["robust_median"][0] - anchor) < 0.3


def test_a_week_of_the_demo_world_alerts_on_its_incidents_and_rarely_elsewhere():
    from telemetry.demo_world import build_world

    cfg = DetectorConfig()
    world = build_world(end=1_795_002_100.0, days=7, users=20, seed=1, step_seconds=300)
    values = np.stack([s.values for s in world.series])
    result = StreamingDetector(len(world.series), cfg).update(
        np.tile(world.ts, (len(world.series), 1)), values
    )
    alerts = result.scores >= cfg.alert_score
    row = {(s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(world.series)}
    near = np.zeros(world.ts.size, dtype=bool)
    for incident in world.incidents:
        during = (world.ts >= incident.start - 1800) & (world.ts <= incident.end)
        cause = row[(incident.cause[0], tuple(sorted(incident.cause[1].items())))]
        assert alerts[cause, during].any(), incident.name
        near |= (world.ts >= incident.start - 1800) & (world.ts <= incident.end + 3 * HOUR)
    # 40 series for a week: at most a handful of alerts away from the incidents.
    assert alerts[:, ~near].sum() <= 4


def test_pause_damps_repeats_and_lets_larger_or_sustained_incidents_through():
    from anomalies.engine.pause import PauseState, damp_repeats

    cfg = DetectorConfig(cooldown_seconds=3000.0, escalation=2.0, escalation_run=3)
    alert = cfg.alert_score
    scores = np.full(30, 0.1)
    evidence = np.full(30, 1.0)
    scores[[2, 5, 8, 20]] = 0.9  # an alert, a repeat, a larger one, one after the pause
    evidence[[2, 5, 8, 20]] = [10.0, 12.0, 25.0, 10.0]
    state = damp_repeats(scores, evidence, PauseState(), step=300.0, cfg=cfg)  # 10-point pause
    alerts = np.flatnonzero(scores >= alert).tolist()
    assert alerts == [2, 8, 20]  # 5 is a repeat; 8 has 2.5x the bar; 20 is after the pause
    assert scores[5] == pytest.approx(0.9 * cfg.cooldown_damping)
    assert state == PauseState(left=1, bar=10.0, run=0)  # 9 of its 10 points were here

    # A fresh run of three alert-worthy points escalates, however small their evidence.
    scores, evidence = np.full(12, 0.1), np.full(12, 1.0)
    scores[[0, 4, 5, 6]] = 0.9
    evidence[0] = 10.0
    state = damp_repeats(scores, evidence, PauseState(), step=300.0, cfg=cfg)
    assert np.flatnonzero(scores >= alert).tolist() == [0, 6]
    assert state == PauseState(left=5, bar=1.0, run=0)  # the new pause, its opening run over

    # The opening alert's own run does not: a level shift raises one alert per pause.
    scores, evidence = np.full(12, 0.9), np.full(12, 10.0)
    damp_repeats(scores, evidence, PauseState(), step=300.0, cfg=cfg)
    assert np.flatnonzero(scores >= alert).tolist() == [0, 11]

    # The run is carried across calls: two points here and one in the next call escalate.
    first, second = np.array([0.9, 0.1, 0.9, 0.9]), np.array([0.9, 0.1])
    state = damp_repeats(first, np.full(4, 5.0), PauseState(), step=300.0, cfg=cfg)
    assert state.run == 2
    damp_repeats(second, np.full(2, 5.0), state, step=300.0, cfg=cfg)
    assert second[0] >= alert


def test_a_weekly_correction_does_not_outlive_the_predictor_it_was_learned_for():
    # Regression: the weekly correction was shared by the predictors. In the first days of
    # a daily square wave the local level was chosen and missed every edge; a week later
    # the daily profile, which predicts the edges, got those misses added on top, and
    # expected 86 where the series had never exceeded 68.
    n = 288 * 21  # three weeks at five minutes
    ts = 1_396_915_200.0 + 300.0 * np.arange(n)  # a Tuesday 00:00 UTC
    hour = (ts // 3600) % 24
    values = np.where((hour >= 9) & (hour < 17), 68.0, 20.0)
    result = StreamingDetector(1).update(ts[None, :], values[None, :])
    settled = slice(288 * 3, None)
    assert result.expected[0, settled].max() < 75.0
    assert result.expected[0, settled].min() > 15.0
    assert (result.scores[0, settled] < DetectorConfig().alert_score).all()

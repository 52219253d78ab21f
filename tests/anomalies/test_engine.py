"""The pure detection engine, on synthetic data whose anomalies we placed ourselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomalies.engine import (
    DetectorConfig,
    StreamingDetector,
    ThresholdRule,
    score_many,
    score_series,
)
from anomalies.engine.calibration import TailCalibrator, score_from_surprisal
from anomalies.engine.csv_runner import CsvInputError, CsvOutputError, run_csv_files
from anomalies.engine.rules import evaluate_rules
from anomalies.engine.statistical import esd_critical_value, generalized_esd

STEP = 300.0
START = 1_700_000_000.0 - (1_700_000_000.0 % 604800)  # a Thursday 00:00 UTC


def seasonal(
    n: int, seed: int = 0, noise: float = 1.0, step: float = STEP
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = START + step * np.arange(n)
    hours = (ts / 3600.0) % 24
    values = 50 + 20 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, noise, n)
    return ts, values


def test_scores_are_in_unit_interval_and_one_per_point():
    ts, values = seasonal(2000)
    scores = score_series(ts, values)
    assert scores.shape == values.shape
    assert np.all((scores >= 0) & (scores <= 1))


def test_score_at_t_uses_only_data_up_to_t():
    ts, values = seasonal(1500, seed=1)
    full = score_series(ts, values)
    changed = values.copy()
    changed[1000:] += 500.0  # the future changes completely
    prefix = score_series(ts, changed)
    np.testing.assert_allclose(prefix[:1000], full[:1000])


def test_scores_stay_causal_when_the_sampling_step_changes_later():
    # A scrape interval that changes from five minutes to an hour after point 1,000 must
    # not change how long the alert pause opened at point 900 lasts: it was sized when it
    # opened. Sized by the step at the end of the batch, it lasted 24 points instead of 288
    # and the repeat at 960 was no longer damped.
    ts, values = seasonal(1500, seed=1)
    values[[900, 960]] += 25.0
    later = np.concatenate([ts[:1000], ts[999] + 3600.0 * np.arange(1, 501)])
    prefix = score_series(ts[:1000], values[:1000])
    full = score_series(later, values)
    assert prefix[900] >= 0.823 and prefix[960] < prefix[900]
    np.testing.assert_array_equal(full[:1000], prefix)


def test_datetimes_of_any_kind_score_as_their_epoch_seconds():
    ts, values = seasonal(600, seed=3)
    values[500] += 20.0
    expected = score_series(ts, values)
    stamps = pd.to_datetime(ts, unit="s", utc=True)
    for given in (
        stamps.tz_convert(None).values,  # datetime64[ns]: nanoseconds if cast to float
        stamps.tz_convert("Europe/Paris"),
        list(stamps.tz_convert(None).to_pydatetime()),  # naive: UTC
    ):
        np.testing.assert_array_equal(score_series(given, values), expected)


@pytest.mark.parametrize(
    ("timestamps", "message"),
    [
        ([0.0, np.nan, 600.0], "timestamp 1 is not finite"),
        ([0.0, 600.0, 300.0], "timestamp 2 is earlier"),
        (["a", "b", "c"], "not numbers"),
    ],
)
def test_bad_timestamps_are_refused_with_the_position(timestamps, message):
    with pytest.raises(ValueError, match=message):
        score_series(timestamps, np.ones(3))


def test_spike_gets_the_highest_score_and_crosses_the_alert_level():
    ts, values = seasonal(1200, seed=2)
    values[1000] += 20.0  # 20 noise standard deviations
    scores = score_series(ts, values)
    assert int(np.argmax(scores)) == 1000
    assert scores[1000] >= DetectorConfig().alert_score


def test_clean_series_rarely_alerts():
    ts, values = seasonal(2000, seed=3)
    scores = score_series(ts, values)
    cfg = DetectorConfig()
    assert np.mean(scores[cfg.burn_in :] >= cfg.alert_score) < 0.002


def test_level_shift_is_detected_at_onset_and_small_shifts_accumulate_evidence():
    rng = np.random.default_rng(4)
    ts = START + STEP * np.arange(1200)
    values = 50 + rng.normal(0, 1, 1200)
    big, small = values.copy(), values.copy()
    big[1000:] += 10.0
    small[1000:] += 4.0  # four sigma: no single point is conclusive, the run of them is
    alert = DetectorConfig().alert_score
    big_scores = score_series(ts, big)
    assert np.flatnonzero(big_scores[1000:] >= alert)[0] == 0
    small_scores = score_series(ts, small)
    assert small_scores[500:1000].max() < alert
    assert 0 <= np.flatnonzero(small_scores[1000:] >= alert)[0] <= 8
    evidence = StreamingDetector(1).update(ts[None, :], small[None, :]).total[0]
    assert evidence[1005:1012].mean() > evidence[1000]


def test_scores_do_not_depend_on_units():
    ts, values = seasonal(1200, seed=5)
    values[1000] += 20.0
    a = score_series(ts, values)
    b = score_series(ts, values * 1000.0 + 7.0)
    assert int(np.argmax(a)) == int(np.argmax(b)) == 1000
    assert np.corrcoef(a, b)[0, 1] > 0.99


def test_flatline_and_missing_data_raise_pattern_votes():
    ts, values = seasonal(1200, seed=6)
    values[900:940] = values[899]  # the exporter is stuck
    values[1100] = np.nan  # a missing value
    det = StreamingDetector(1)
    result = det.update(ts[None, :], values[None, :])
    pattern = result.votes()["pattern"][0]
    assert pattern[900:940].any()
    assert pattern[1100]
    assert not pattern[500:880].any()
    # Both are the data stopping, which the result reports on its own.
    stalled = result.stalled[0]
    assert stalled[900:940].max() >= 3.0 and stalled[1100] >= 3.0
    assert stalled[500:880].max() < 3.0


def test_incremental_updates_match_one_batch_through_serialised_state():
    ts, values = seasonal(1500, seed=7)
    values[1300] += 12.0
    values[1400] += 80.0  # escalates inside the pause that the first spike opened
    cfg = DetectorConfig(ml_retrain_every=400, ml_min_train=100)
    batch = StreamingDetector(2, cfg).update(np.stack([ts, ts]), np.stack([values, values * 2]))

    det = StreamingDetector(2, cfg)
    pieces = []
    for a, b in ((0, 700), (700, 701), (701, 1350), (1350, 1500)):
        result = det.update(np.stack([ts[a:b], ts[a:b]]), np.stack([values[a:b], values[a:b] * 2]))
        pieces.append(result.scores)
        det = StreamingDetector.from_states(
            [det.series_state(0), det.series_state(1)], fleet=det.fleet_state(), config=cfg
        )
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), batch.scores, atol=1e-6)
    alert = cfg.alert_score
    assert batch.scores[0, 1300] >= alert and batch.scores[0, 1400] >= alert


def test_regular_spikes_on_a_zero_series_become_routine():
    # A cron job's counter: 0, with a spike of 20 every 100 points. Between spikes the
    # residual scale shrinks towards 0, so each spike measures larger than the last; the
    # surprisal cap makes them tie, and the ranking then learns that they are routine.
    n = 4000
    ts = START + STEP * np.arange(n)
    values = np.zeros(n)
    values[::100] = 20.0
    values[6::100] = 20.0
    detector = StreamingDetector(1, DetectorConfig())
    result = detector.update(ts[None], values[None])
    for surprisal in result.surprisal.values():
        assert surprisal.max() <= DetectorConfig().max_surprisal
    alerts = np.flatnonzero(result.scores[0] >= DetectorConfig().alert_score)
    # The spikes reach the cap within 6 days; by day 9 enough capped ones are held.
    late = alerts[alerts >= 2600]
    assert late.size == 0, late
    uncapped = StreamingDetector(1, DetectorConfig(max_surprisal=np.inf))
    routine = uncapped.update(ts[None], values[None]).scores[0]
    assert (routine[2600:] >= DetectorConfig().alert_score).sum() >= 3  # what the cap stops


def test_jittered_timestamps_are_not_missing_data_but_a_real_gap_is():
    rng = np.random.default_rng(17)
    intervals = STEP + rng.uniform(-100.0, 100.0, 1500)  # a scraper that is never on time
    intervals[1200] = 4 * STEP  # three points really lost
    ts = START + np.cumsum(intervals)
    _, values = seasonal(1500, seed=17)
    det = StreamingDetector(1)
    votes = det.update(ts[None, :], values[None, :]).votes()["pattern"][0]
    assert 0.8 * STEP < det.step[0] < 1.2 * STEP
    assert votes[100:].mean() < 0.01
    assert votes[1200]


def test_independent_series_score_exactly_as_when_scored_alone():
    cfg = DetectorConfig(ml_retrain_every=400, ml_min_train=100)
    ts_a, a = seasonal(1500, seed=21)
    ts_b, b = seasonal(1100, seed=22, noise=4.0)
    b[::97] += 60.0  # a spiky neighbour that would shape a shared forest
    together = score_many([ts_a, ts_b], [a, b], cfg, independent=True)
    for ts, values, scores in ((ts_a, a, together[0]), (ts_b, b, together[1])):
        np.testing.assert_array_equal(scores, score_many([ts], [values], cfg)[0])
    # The premise: sharing one learned model couples them.
    shared = score_many([ts_a, ts_b], [a, b], cfg)
    assert not np.array_equal(shared[0], together[0])


def test_fleet_numbers_are_checked_and_a_multi_fleet_detector_has_no_single_fleet():
    with pytest.raises(ValueError, match="fleets"):
        StreamingDetector(2, fleets=np.array([0]))
    with pytest.raises(ValueError, match="fleets"):
        StreamingDetector(2, fleets=np.array([0, -1]))
    with pytest.raises(ValueError, match="several fleets"):
        StreamingDetector(2, fleets=np.array([0, 1])).fleet_state()


def test_padding_leaves_a_series_state_untouched():
    ts, values = seasonal(600, seed=8)
    det = StreamingDetector(2)
    padded_ts = np.stack([ts, np.r_[ts[:300], np.full(300, np.nan)]])
    det.update(padded_ts, np.stack([values, values]))
    solo = StreamingDetector(1)
    solo.update(ts[None, :300], values[None, :300])
    assert det.count[1] == solo.count[0] == 300
    assert det.base["level"][1] == pytest.approx(solo.base["level"][0])


def test_recurring_weekly_pattern_becomes_expected():
    n = 6 * 168  # six weeks of hourly points
    ts, values = seasonal(n, seed=9, step=3600.0)
    week_hour = ((ts / 3600.0).astype(int) + 72) % 168
    bump = week_hour == 40  # every week, the same hour: a batch job
    values[bump] += 60.0
    scores = score_series(ts, values)
    weekly_peaks = [
        scores[bump & (ts >= START + w * 604800) & (ts < START + (w + 1) * 604800)].max()
        for w in range(6)
    ]
    # Once the daily shape is learned the job is an anomaly; weeks later it is expected.
    first = max(weekly_peaks[:2])
    assert first >= DetectorConfig().alert_score
    assert weekly_peaks[-1] < first
    assert weekly_peaks[-1] < DetectorConfig().alert_score


def test_threshold_rule_fires_only_after_its_duration_even_across_runs():
    ts = STEP * np.arange(20)
    values = np.zeros(20)
    values[5:15] = 10.0
    rule = ThresholdRule(name="hot", above=5.0, min_duration_seconds=3 * STEP)
    _, fired, since = evaluate_rules(ts[:7], values[:7], [rule], {})
    assert not fired["hot"].any()
    assert since["hot"] == ts[5]
    _, fired, since = evaluate_rules(ts[7:], values[7:], [rule], since)
    assert np.flatnonzero(fired["hot"])[0] + 7 == 8
    assert since["hot"] is None


def test_rule_breach_alone_reaches_the_alert_level():
    ts, values = seasonal(400, seed=10)
    det = StreamingDetector(1)
    det.rules[0] = [ThresholdRule(name="cap", above=60.0, min_duration_seconds=0)]
    result = det.update(ts[None, :], values[None, :])
    fired = values > 60.0
    assert result.votes()["rules"][0][fired].all()
    assert not result.votes()["rules"][0][~fired].any()


def test_rule_needs_a_bound():
    with pytest.raises(ValueError, match="above"):
        ThresholdRule(name="empty")


def _surprisals(stats: np.ndarray) -> np.ndarray:
    cal = TailCalibrator(1, (1.0,), span=5000.0)
    return np.array(
        [cal.surprisal_and_update(np.array([[s]]), np.array([True]))[0, 0] for s in stats]
    )


def test_calibration_is_exact_for_exponential_tails_and_conservative_for_gaussian():
    rng = np.random.default_rng(11)
    # |Laplace| has an exponential tail: surprisal >= 3 should happen once in a thousand.
    laplace = _surprisals(np.abs(rng.laplace(size=40000)))
    assert 0.0004 < np.mean(laplace[2000:] >= 3.0) < 0.0025
    # A Gaussian tail is lighter: the same threshold must not fire more often.
    gauss = _surprisals(np.abs(rng.normal(size=40000)))
    assert np.mean(gauss[2000:] >= 3.0) <= 0.001


def test_score_mapping_is_monotone_and_bounded():
    s = np.linspace(0, 100, 1001)
    scores = score_from_surprisal(s, 6.0)
    assert np.all(np.diff(scores) > 0) or np.all(np.diff(scores) >= 0)
    assert scores[0] == 0 and scores[-1] <= 1.0
    assert score_from_surprisal(np.array([6.0]), 6.0)[0] == pytest.approx(0.5)


def test_esd_critical_value_matches_grubbs_table():
    # Published two-sided Grubbs critical values at alpha = 0.05 (n = 10 and n = 20).
    assert esd_critical_value(10, 1, 0.05) == pytest.approx(2.290, abs=2e-3)
    assert esd_critical_value(20, 1, 0.05) == pytest.approx(2.709, abs=2e-3)


def test_generalized_esd_finds_exactly_the_planted_outliers():
    rng = np.random.default_rng(12)
    x = rng.normal(size=200)
    planted = [17, 88, 150]
    x[planted] = [9.0, -8.0, 10.0]
    found = generalized_esd(x, max_outliers=10)
    assert sorted(found.tolist()) == planted
    assert generalized_esd(rng.normal(size=200), max_outliers=10).size <= 1


def test_csv_runner_writes_nab_layout(tmp_path):
    src = tmp_path / "in" / "realThing"
    src.mkdir(parents=True)
    ts, values = seasonal(500, seed=13)
    stamps = pd.to_datetime(ts, unit="s").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(src / "a.csv", index=False)
    out = run_csv_files([src / "a.csv"], tmp_path / "out")
    frame = pd.read_csv(out[0])
    assert out[0] == tmp_path / "out" / "realThing" / "a.csv"
    assert list(frame.columns) == ["timestamp", "value", "anomaly_score"]
    assert len(frame) == 500 and frame["anomaly_score"].between(0, 1).all()


def test_csv_runner_rejects_bad_file_before_writing_anything(tmp_path):
    good = tmp_path / "good.csv"
    bad = tmp_path / "bad.csv"
    good.write_text("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,2\n")
    bad.write_text("timestamp,value\nnot a date,1\n")
    with pytest.raises(CsvInputError, match="line 2"):
        run_csv_files([good, bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_csv_runner_reads_empty_values_as_missing_and_rejects_text(tmp_path):
    gap = tmp_path / "gap.csv"
    gap.write_text("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,\n")
    frame = pd.read_csv(run_csv_files([gap], tmp_path / "out")[0])
    assert frame["value"].isna().tolist() == [False, True]
    text = tmp_path / "text.csv"
    text.write_text("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,n/a!\n")
    with pytest.raises(CsvInputError, match=r"line 3: value 'n/a!' is not a number"):
        run_csv_files([text], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_csv_runner_never_writes_over_an_input_or_outside_the_out_dir(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    src = data / "x.csv"
    src.write_text("timestamp,value,note\n2020-01-01 00:00:00,1,a\n2020-01-01 00:05:00,2,b\n")
    before = src.read_text()
    with pytest.raises(CsvInputError, match="is an input file"):
        run_csv_files([src], tmp_path)  # `--out-dir .` next to data/
    assert src.read_text() == before
    work = tmp_path / "work"
    work.mkdir()
    (work / "x.csv").write_text("an unrelated file")
    monkeypatch.chdir(work)
    (out,) = run_csv_files([Path("../data/x.csv")], Path("out"))
    assert out == Path("out/data/x.csv") and (work / out).exists()
    assert (work / "x.csv").read_text() == "an unrelated file"


def test_csv_runner_reads_iso_8601_per_cell_and_writes_values_back_exactly(tmp_path):
    # Python's isoformat() drops a zero fraction; offsets and a Z may be mixed.
    src = tmp_path / "mixed.csv"
    src.write_text(
        "timestamp,value\n"
        "2024-01-01 00:00:00,0.0000001234\n"
        "2024-01-01 00:00:00.500000,-4e-7\n"
        "2024-01-01T00:00:01Z,\n"
        "2024-01-01T01:00:02+01:00,1\n"
    )
    frame = pd.read_csv(run_csv_files([src], tmp_path / "out")[0], dtype=str)
    assert frame["value"].fillna("").tolist() == ["0.0000001234", "-4e-7", "", "1"]
    assert frame["timestamp"].tolist()[1] == "2024-01-01 00:00:00.500000"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("timestamp,value\n", "no data rows"),
        ("timestamp,value\n1700000000,1\n", "line 2: timestamp '1700000000' is not an ISO 8601"),
        ("timestamp,value\n00:05:00,1\n", "is not an ISO 8601"),
        (
            "timestamp,value\n2020-01-01 00:05:00,1\n2020-01-01 00:00:00,1\n",
            "line 3: timestamp is earlier",
        ),
    ],
)
def test_csv_runner_names_the_line_and_the_problem(tmp_path, body, message):
    src = tmp_path / "bad.csv"
    src.write_text(body)
    with pytest.raises(CsvInputError, match=message):
        run_csv_files([src], tmp_path / "out")


def test_csv_runner_replaces_no_output_when_one_write_fails(tmp_path):
    rows = "timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,2\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "one.csv").write_text(rows)
    (tmp_path / "b" / "two.csv").write_text(rows)
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "one.csv").write_text("the previous result")
    (out / "b" / "two.csv").mkdir(parents=True)  # a directory where the file must go
    with pytest.raises(CsvOutputError, match=r"two\.csv: exists and is not a file"):
        run_csv_files([tmp_path / "a" / "one.csv", tmp_path / "b" / "two.csv"], out)
    assert (out / "a" / "one.csv").read_text() == "the previous result"
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["one.csv"]


def test_root_cause_ranks_earlier_onset_first_then_bigger_deviation():
    from anomalies.engine.root_cause import CauseCandidate, rank_causes

    onset = 10_000.0
    ranked = rank_causes(
        onset,
        [
            CauseCandidate(1, onset, deviation=40.0, peak_z=40.0),  # the anomaly itself
            CauseCandidate(2, onset - 600.0, deviation=12.0, peak_z=12.0),  # moved first
            CauseCandidate(3, onset + 60.0, deviation=50.0, peak_z=50.0),  # simultaneous
        ],
        step_seconds=300.0,
    )
    assert [r.key for r in ranked] == [2, 3, 1]
    assert ranked[0].lead_seconds == 600.0
    assert ranked[0].score > ranked[-1].score


def test_root_cause_orders_onsets_a_fraction_of_a_step_apart():
    """Regression: a cause 100 s ahead of a much larger effect (300 s steps) ranks first;
    onsets 30 s apart are simultaneous and the larger deviation leads."""
    from anomalies.engine.root_cause import CauseCandidate, rank_causes

    onset = 10_000.0

    def order(lead_seconds: float) -> list[int]:
        candidates = [
            CauseCandidate(1, onset, deviation=46.0, peak_z=30.0),
            CauseCandidate(2, onset - lead_seconds, deviation=19.0, peak_z=9.0),
        ]
        return [r.key for r in rank_causes(onset, candidates, step_seconds=300.0)]

    assert order(100.0) == [2, 1]
    assert order(30.0) == [1, 2]


def test_a_series_barely_abnormal_before_the_incident_does_not_outrank_the_cause():
    """The demo world seeded at 03:00 (seed 2): a query count at surprisal 9.6, just over the
    alert level, began four minutes before the error ratio that caused the incident (90.3)
    and was ranked the cause. Precedence counts among candidates that moved materially."""
    from anomalies.engine.root_cause import MATERIAL_SHARE, CauseCandidate, rank_causes

    onset = 10_000.0
    blip = CauseCandidate(1, onset - 241.0, deviation=9.6, peak_z=4.4)
    cause = CauseCandidate(2, onset - 16.0, deviation=90.3, peak_z=109.1)
    itself = CauseCandidate(3, onset, deviation=45.5, peak_z=27.8)
    ranked = rank_causes(onset, [blip, cause, itself], step_seconds=300.0)
    assert [r.key for r in ranked] == [2, 3, 1]
    assert ranked[-1].score < min(r.score for r in ranked[:-1])
    # A candidate just over the share is material again, and its precedence counts.
    material = CauseCandidate(1, onset - 241.0, deviation=MATERIAL_SHARE * 90.3 + 0.1)
    assert rank_causes(onset, [material, cause, itself], step_seconds=300.0)[0].key == 1


def test_an_aggregate_ranks_after_the_part_that_drives_it():
    """The demo world seeded at 06:30 (seed 8): the fleet-wide error ratio's onset was
    estimated 134 s before that of the checkout endpoint's error ratio, which makes it,
    and the aggregate was ranked the cause of its own part's burst."""
    from anomalies.engine.root_cause import CauseCandidate, rank_causes

    onset = 10_000.0
    checkout = CauseCandidate(2, onset, deviation=95.8, peak_z=104.6)
    search = CauseCandidate(3, onset - 200.0, deviation=5.0, peak_z=3.0)  # barely moved

    def order(fleet_lead: float, part_lead: float = 0.0, *parts: int) -> list[int]:
        fleet = CauseCandidate(
            1, onset - fleet_lead, deviation=39.1, peak_z=25.6, parts=frozenset(parts)
        )
        part = CauseCandidate(2, onset - part_lead, deviation=95.8, peak_z=104.6)
        ranked = rank_causes(onset, [fleet, part, search], step_seconds=300.0)
        return [r.key for r in ranked]

    # Without the relation, precedence puts the fleet first; with it, its part leads.
    assert order(134.0) == [1, 2, 3]
    assert order(134.0, 0.0, 2, 3) == [2, 1, 3]
    # Simultaneous, the part leads whatever the sizes say.
    assert order(0.0, 0.0, 2)[0] == 2
    ranked = rank_causes(
        onset,
        [CauseCandidate(1, onset, 300.0, 500.0, frozenset({2})), checkout],
        step_seconds=300.0,
    )
    assert [r.key for r in ranked] == [2, 1] and ranked[1].lead_seconds == 0.0
    # A part that moved more than a step after the aggregate did not move it...
    assert order(400.0, 0.0, 2) == [1, 2, 3]
    # ...and one that barely moved cannot have: only `search` is its part here.
    assert order(134.0, 0.0, 3) == [1, 2, 3]
    # The aggregate's lead is still reported as measured.
    fleet = CauseCandidate(1, onset - 134.0, 39.1, 25.6, frozenset({2}))
    ranked = rank_causes(onset, [fleet, checkout], step_seconds=300.0)
    assert [(r.key, r.lead_seconds) for r in ranked] == [(2, 0.0), (1, 134.0)]


@pytest.mark.parametrize(
    ("name", "direction", "layer"),
    [
        ("http.requests.rate", 1, "DEMAND"),
        ("users.active", 1, "DEMAND"),
        ("http.server.active_requests", 1, "DEMAND"),
        ("http.requests.rate", -1, "OUTCOME"),  # users leaving during an outage
        ("system.cpu.utilization", 1, "RESOURCE"),
        ("system.network.errors", 1, "RESOURCE"),  # a resource's errors (USE's E)
        ("system.cpu.utilization", -1, "OUTCOME"),  # waiting on something else
        ("db.connections.active", 1, "RESOURCE"),
        ("db.connections.wait_time", 1, "RESOURCE"),
        ("celery.queue.backlog", 1, "RESOURCE"),
        ("api.ratelimit.utilization", 1, "RESOURCE"),
        ("kafka_consumergroup_lag", 1, "RESOURCE"),
        ("http.latency.p95", 1, "OUTCOME"),
        ("http.server.request.duration", 1, "OUTCOME"),
        ("http.errors.ratio", 1, "OUTCOME"),
        ("db.time.ms", 1, "OUTCOME"),
        ("db.queries.per_request", 1, "OUTCOME"),
        ("requests.per_user", 1, "OUTCOME"),
        ("checkout.orders", 1, "OUTCOME"),  # not recognised: no prior
        ("", 1, "OUTCOME"),
    ],
)
def test_signal_layer_reads_load_saturation_and_symptoms_from_the_name(name, direction, layer):
    from anomalies.engine.signal_layers import Layer, signal_layer

    assert signal_layer(name, direction) is Layer[layer]


def test_a_resource_ranks_before_the_symptom_that_moved_in_the_same_step():
    """The demo world of seed 1 scored an hour at a time: CPU saturation and the latency it
    drives began 42 s apart on 300 s steps (simultaneous), and the latency's larger
    deviation ranked it the cause of the CPU's own anomaly."""
    from anomalies.engine.root_cause import CauseCandidate, rank_causes
    from anomalies.engine.signal_layers import Layer

    onset = 10_000.0

    def order(cpu_layer: int, latency_lead: float = 42.0, rate_layer: int = Layer.OUTCOME):
        cpu = CauseCandidate(1, onset, deviation=24.0, peak_z=14.0, layer=cpu_layer)
        latency = CauseCandidate(2, onset - latency_lead, deviation=61.0, peak_z=38.0)
        rate = CauseCandidate(3, onset + 30.0, deviation=15.0, peak_z=6.0, layer=rate_layer)
        ranked = rank_causes(onset, [cpu, latency, rate], step_seconds=300.0)
        assert [r.rank for r in ranked] == [1, 2, 3]
        assert ranked[0].score > ranked[1].score > ranked[2].score
        return [r.key for r in ranked]

    assert order(Layer.OUTCOME) == [2, 1, 3]  # no prior: the larger deviation leads
    assert order(Layer.RESOURCE) == [1, 2, 3]
    # More work arriving in the same step ranks before the resource it saturates...
    assert order(Layer.RESOURCE, rate_layer=Layer.DEMAND) == [3, 1, 2]
    # ...but a layer never outweighs a whole step of precedence, nor a material move.
    assert order(Layer.RESOURCE, latency_lead=120.0) == [2, 1, 3]
    blip = CauseCandidate(3, onset - 30.0, deviation=5.0, peak_z=3.0, layer=Layer.DEMAND)
    latency = CauseCandidate(2, onset, deviation=61.0, peak_z=38.0)
    assert [r.key for r in rank_causes(onset, [latency, blip], step_seconds=300.0)] == [2, 3]


def test_a_declared_dependency_orders_simultaneous_onsets_before_layers():
    """An operator declared the endpoint dependent on the database: in the step where a
    cache (a resource, by its name) and the database's query latency both moved, the
    database ranks first, as neither names nor sizes could tell. Only among simultaneous
    onsets: a step of precedence, or a material move, still wins."""
    from anomalies.engine.root_cause import CauseCandidate, rank_causes
    from anomalies.engine.signal_layers import Layer

    onset = 10_000.0

    def order(declared: bool, db_lead: float = 0.0, db_size: float = 20.0) -> list[int]:
        db = CauseCandidate(1, onset - db_lead, db_size, 9.0, declared=declared)
        cache = CauseCandidate(2, onset - 30.0, 35.0, 15.0, layer=Layer.RESOURCE)
        itself = CauseCandidate(3, onset, 61.0, 38.0)
        ranked = rank_causes(onset, [db, cache, itself], step_seconds=300.0)
        assert [r.rank for r in ranked] == [1, 2, 3]
        assert ranked[0].score > ranked[1].score > ranked[2].score
        return [r.key for r in ranked]

    assert order(declared=False) == [2, 3, 1]  # layer, then size
    assert order(declared=True) == [1, 2, 3]
    assert order(declared=True, db_lead=-150.0) == [2, 3, 1]  # half a step later
    assert order(declared=True, db_size=5.0) == [2, 3, 1]  # barely moved


def test_candidates_in_different_layers_never_share_a_rank():
    from anomalies.engine.root_cause import CauseCandidate, rank_causes
    from anomalies.engine.signal_layers import Layer

    ranked = rank_causes(
        0.0,
        [
            CauseCandidate(1, -300.0, 12.9, 29.11),
            CauseCandidate(2, -300.0, 12.3, 29.12, layer=Layer.RESOURCE),
        ],
        step_seconds=300.0,
    )
    assert [(r.key, r.rank) for r in ranked] == [(2, 1), (1, 2)]


def test_root_cause_ties_the_same_signal_seen_twice():
    from anomalies.engine.root_cause import CauseCandidate, rank_causes

    ranked = rank_causes(
        0.0,
        [CauseCandidate(1, -300.0, 12.9, 29.11), CauseCandidate(2, -300.0, 12.3, 29.12)],
        step_seconds=300.0,
    )
    assert [r.rank for r in ranked] == [1, 1]


def test_root_cause_breaks_a_surprisal_tie_by_the_larger_peak_whatever_the_order():
    # Each family's surprisal is capped, so an incident's large deviations tie; they were
    # ranked in the order the database returned them.
    from anomalies.engine.root_cause import CauseCandidate, rank_causes

    candidates = [CauseCandidate(k, -300.0, 100.0, 10.0 * k) for k in range(1, 6)]
    for order in (candidates, candidates[::-1], candidates[2:] + candidates[:2]):
        ranked = rank_causes(0.0, order, step_seconds=300.0)
        assert [r.key for r in ranked] == [5, 4, 3, 2, 1]
        assert [r.rank for r in ranked] == [1, 2, 3, 4, 5]


def test_onset_is_the_interpolated_threshold_crossing():
    from anomalies.engine.root_cause import estimate_onset

    ts = np.arange(6) * 300.0
    jump = estimate_onset(ts, np.array([0.0, 0.0, 16.0, 20.0, 20.0, 20.0]), detected_at=4)
    creep = estimate_onset(ts, np.array([0.0, 0.0, 0.0, 3.5, 20.0, 20.0]), detected_at=4)
    assert 300.0 < jump < 600.0 and 600.0 < creep < 900.0
    assert jump < creep


def test_a_noise_point_before_a_move_does_not_make_its_onset_a_step_early():
    """Seed 1's demo world ending at 16:00, scored an hour at a time: the checkout p50
    latency was beyond 2 (but under 3) scale units for two points before it moved, its
    onset was walked back over them, and it was ranked ahead of the CPU that drove it."""
    from anomalies.engine.root_cause import ONSET_Z, estimate_onset

    ts = np.arange(8) * 300.0
    noisy = np.array([0.4, -0.8, 0.3, 2.4, 2.7, 31.0, 56.0, 50.0])
    onset = estimate_onset(ts, noisy, detected_at=6)
    assert 1200.0 < onset < 1500.0  # between the last noise point and the move
    # The walk back still crosses points beyond the threshold, however many.
    ramp = np.array([0.0, 0.0, 0.5, ONSET_Z + 0.5, 8.0, 31.0, 56.0, 50.0])
    assert 600.0 < estimate_onset(ts, ramp, detected_at=6) < 900.0


def test_severity_grows_with_magnitude_duration_and_importance():
    from anomalies.engine.severity import classify_severity, severity_index

    base = severity_index(10.0, 10.0, 300.0, 1.0)
    assert severity_index(20.0, 20.0, 300.0, 1.0) > base
    assert severity_index(20.0, 10.0, 300.0, 1.0) >= base <= severity_index(10.0, 20.0, 300.0, 1.0)
    assert severity_index(10.0, 10.0, 7200.0, 1.0) > base
    assert severity_index(10.0, 10.0, 300.0, 2.0) > base
    levels = ["info", "warning", "critical"]
    ladder = [classify_severity(s, s, 600.0, 1.0) for s in (4.0, 15.0, 60.0)]
    assert ladder == levels


def test_severity_needs_both_improbability_and_size():
    from anomalies.engine.severity import classify_severity

    # Just enough evidence to alert, 4 scale widths off, for three hours: the demo world's
    # one false alarm of that shape was "critical" when improbability alone counted.
    assert classify_severity(11.0, 4.2, 3 * 3600.0, 1.0) == "warning"
    assert classify_severity(10.0, 3.0, 1200.0, 1.0) == "info"
    # A huge deviation that the series produces routinely is not critical on size alone.
    assert classify_severity(10.0, 60.0, 600.0, 1.0) != "critical"
    # An injected incident of the demo world: 15 units of evidence, 10 widths, 2.3 hours.
    assert classify_severity(15.0, 10.3, 8340.0, 1.0) == "critical"
    # An operator's rule breach is judged on improbability, not on its size in widths.
    assert classify_severity(40.0, 1.0, 1800.0, 1.0, improbability_only=True) == "critical"
    assert classify_severity(40.0, 1.0, 1800.0, 1.0) != "critical"
    assert classify_severity(10.0, float("nan"), 600.0, 1.0) == "info"
    # Data that stopped has no size: a stuck exporter repeating a normal value for three
    # hours is judged on improbability, or it would stay "info" while monitoring is blind.
    assert classify_severity(15.0, 0.3, 3 * 3600.0, 1.0) == "info"
    assert classify_severity(15.0, 0.3, 3 * 3600.0, 1.0, improbability_only=True) == "critical"


def test_a_recurrence_goes_the_confirmed_way_and_is_nearly_as_large():
    from anomalies.engine.feedback import Fingerprint, is_recurrence

    confirmed = [Fingerprint(direction=1, peak_z=50.0, methods=frozenset({"statistical"}))]

    def candidate(direction: int, z: float) -> Fingerprint:
        return Fingerprint(direction=direction, peak_z=z, methods=frozenset({"pattern"}))

    assert is_recurrence(candidate(1, 40.0), confirmed)  # 0.8 of it: the same incident
    assert is_recurrence(candidate(1, 120.0), confirmed)  # a larger one too
    assert not is_recurrence(candidate(1, 39.0), confirmed)  # a smaller excursion
    assert not is_recurrence(candidate(-1, 60.0), confirmed)  # the other way
    assert not is_recurrence(candidate(1, 60.0), [])
    # A confirmed stall has no size: it makes no point "as large as" it.
    stall = [Fingerprint(direction=-1, peak_z=0.0, methods=frozenset({"stalled"}))]
    assert not is_recurrence(candidate(-1, 0.5), stall)


def test_only_a_series_one_unanswered_incident_vouches_for_its_recurrence():
    from dataclasses import replace

    from anomalies.engine.feedback import Fingerprint, PastAnomaly, unanswered_incident

    outage_fp = Fingerprint(direction=1, peak_z=57.0, methods=frozenset({"statistical"}))
    outage = PastAnomaly(
        fingerprint=outage_fp,
        lasted_seconds=3 * 3600.0,
        critical=True,
        confirmed=False,
        dismissed=False,
        recurrence=False,
    )
    burst = replace(outage, lasted_seconds=600.0, critical=False)

    assert unanswered_incident([outage]) == outage_fp
    assert unanswered_incident([outage, burst]) is None  # two: anomalies are routine there
    assert unanswered_incident([outage, replace(outage, recurrence=True)]) is None  # spent
    assert unanswered_incident([]) is None
    assert unanswered_incident([replace(outage, recurrence=True)]) is None
    assert unanswered_incident([replace(outage, critical=False)]) is None
    assert unanswered_incident([replace(outage, lasted_seconds=1200.0)]) is None  # a burst
    # An operator's confirmation says more: it vouches for every recurrence, elsewhere.
    assert unanswered_incident([replace(outage, confirmed=True)]) is None
    # A false positive vouches for nothing, and still says the series has excursions.
    assert unanswered_incident([replace(outage, dismissed=True)]) is None
    assert unanswered_incident([outage, replace(burst, dismissed=True)]) is None


def test_dismissed_fingerprint_suppresses_only_no_worse_patterns():
    from anomalies.engine.feedback import Fingerprint, is_dismissed

    dismissed = [Fingerprint(direction=1, peak_z=10.0, methods=frozenset({"statistical"}))]
    same = Fingerprint(direction=1, peak_z=11.0, methods=frozenset({"statistical"}))
    bigger = Fingerprint(direction=1, peak_z=30.0, methods=frozenset({"statistical"}))
    other_way = Fingerprint(direction=-1, peak_z=5.0, methods=frozenset({"statistical"}))
    new_method = Fingerprint(direction=1, peak_z=5.0, methods=frozenset({"statistical", "rules"}))
    assert is_dismissed(same, dismissed)
    assert not any(is_dismissed(c, dismissed) for c in (bigger, other_way, new_method))


def test_incidents_join_anomalies_through_their_likeliest_causes():
    from anomalies.engine.root_cause import group_incidents

    # 1 caused 2 and 3; 4 put down to 3 (a chain); 5 tied between 1 and 6; 7 alone;
    # 8 blames 99, outside the window: alone too.
    keys = [1, 6, 2, 3, 4, 5, 7, 8]
    blamed = [(2, 1), (3, 1), (4, 3), (5, 1), (5, 6), (8, 99)]
    assert group_incidents(keys, blamed) == [[1, 6, 2, 3, 4, 5], [7], [8]]
    assert group_incidents([], []) == []
    # The order of the pairs does not matter, the order of the keys does.
    assert group_incidents(keys, blamed[::-1]) == [[1, 6, 2, 3, 4, 5], [7], [8]]
    assert group_incidents([3, 4, 1], [(4, 3)]) == [[3, 4], [1]]

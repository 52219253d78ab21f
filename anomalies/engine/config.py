"""Tunable constants of the detector, in one frozen dataclass.

They live together so that a stored detector state can record the configuration it was
built with, and so that an evaluation can vary one knob without touching the algorithms.
Every window is expressed as an exponential-smoothing "span" in points (alpha = 2/(span+1))
because the streaming state keeps running averages, not raw windows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

FAMILIES: tuple[str, ...] = ("statistical", "learned", "pattern", "rules")
# Not a family: the pattern family's "the data stopped" part (flatline, missing points),
# reported on its own among an anomaly's methods (ScoreResult.stalled).
STALLED = "stalled"
# Not a family either: the pattern family's "a positive series fell to a fraction of its
# expected value" part (collapse.py), reported on its own (ScoreResult.collapsed).
COLLAPSE = "collapse"


@dataclass(frozen=True)
class DetectorConfig:
    # Points scored 0 while the running statistics settle (NAB calls this probation).
    burn_in: int = 48
    # Expected-value predictors: a medium local level, a slow baseline and the
    # hour-of-day / hour-of-week profiles of the deviation from that baseline.
    level_span: float = 16.0
    baseline_span: float = 512.0
    profile_span: float = 12.0
    error_span: float = 256.0
    # Multi-scale averaging windows of the residual (short and medium).
    short_span: float = 3.0
    medium_span: float = 24.0
    # Surge view: a short average of the raw values against their running median and MAD,
    # which move at the pace of about `robust_span` points (a week of 5-minute data).
    surge_span: float = 6.0
    robust_span: float = 2016.0
    # Residual updates are clipped at this many scale units so that an anomaly does not
    # drag the baseline it is being compared with.
    winsor: float = 4.0
    # Collapse (collapse.py): the series' usual log deviation from its expected value is
    # tracked over this many points (NAB subset 75.2-75.4 for spans of 24 to 960).
    collapse_span: float = 96.0
    # CUSUM drift in scale units and the cap that keeps a long shift from growing forever.
    cusum_drift: float = 0.5
    cusum_cap: float = 40.0
    # Calibration: each raw statistic is turned into a tail probability against its own
    # running log-normal fit, over this span.
    calibration_span: float = 2000.0
    # Scale floor relative to the level, so that near-constant series do not produce
    # infinite z-scores on the first wobble.
    relative_scale_floor: float = 1e-3
    # A family's surprisal is capped here (p = 1e-100): beyond it a probability says nothing
    # more. Without the cap, a series at 0 between regular spikes (a cron job's counter)
    # drove its winsorised scale towards 0, so each spike measured larger than the last
    # (surprisal 8 -> 400,000 over two weeks), set an evidence record and alerted every
    # day. Capped, the spikes tie and the ranking learns they are routine: NAB
    # art_increase_spike_density false alarms 15 -> 4, subset 72.6 -> 73.8; elsewhere it
    # binds on 4 points of Twitter bursts that alert anyway (30 / 50 / 1000: 73.2 / 73.2 / 73.0).
    max_surprisal: float = 100.0
    # Combination: the weighted sum of the families' surprisals (-log10 tail probability),
    # i.e. Fisher-style evidence accumulation: two methods agreeing at p=0.01 each count as
    # much as one at p=0.0001.
    weights: dict[str, float] = field(
        default_factory=lambda: {"statistical": 1.0, "learned": 1.0, "pattern": 1.0, "rules": 1.0}
    )
    # A method votes when its own tail probability is below 10**-vote_surprisal.
    vote_surprisal: float = 3.0
    # The summed evidence is ranked against the series' own recent evidence (evidence.py):
    # the histogram forgets with this span in points, and evidence beyond everything held
    # earns `record_bonus` per doubling.
    evidence_span: float = 8000.0
    record_bonus: float = 0.5
    # The ranked surprisal is capped at raw evidence / this: reaching the alert level (2.5)
    # takes a summed surprisal of 9.4 (e.g. two methods at p = 1e-4.7 each). Over four
    # demo-world weeks of 40 series, alerts away from the incidents: 57 / 32 / 18 / 10 / 8
    # for 3 / 3.25 / 3.5 / 3.75 / 4; NAB subset 67.6 / 67.5 / 68.0 / 68.2 / 66.5.
    evidence_per_surprisal: float = 3.75
    # Ranked surprisal at which the combined score reaches 0.5 (score = 1 - 2**(-s/half)).
    score_half_surprisal: float = 1.0
    # A point alerts at 0.823 = 1 - 2**-2.5: evidence in the top 0.3% of this series'
    # recent history. After an alert, scores are damped for `cooldown_seconds`, so one
    # incident raises one alert instead of a burst. Inside a pause, a point with
    # `escalation` times the opening alert's raw evidence alerts anew (0: never), so that
    # a false alarm does not blind the detector to the next incident for a day.
    alert_score: float = 0.823
    cooldown_seconds: float = 86400.0
    cooldown_damping: float = 0.5
    escalation: float = 2.0
    # ...and so does a fresh run of this many points in a row that would each alert on
    # their own (0: never), started after the opening alert's run ended (pause.py).
    escalation_run: int = 6
    # Range record (range_record.py): a point beyond the series' running high / low by more
    # than `range_margin` of the range's width earns `range_bonus` ranked surprisal per
    # doubling of that excess; the high and low relax towards the expected value over
    # `range_span` points. NAB subset 68.5 -> 72.0 (two Twitter bursts above an earlier
    # maximum now alert); margin 0.05 / 0.15 gave 71.7 / 70.3, no relaxation 70.3.
    range_bonus: float = 2.0
    range_margin: float = 0.1
    range_span: float = 32000.0
    # Sustained evidence (sustained.py): the least evidence among a series' last
    # `sustained_run` points, ranked against its own history of that floor, so that an hour
    # of moderate abnormality is not outranked by routine one-point spikes (1: off). NAB
    # subset 72.0 -> 73.2 alone (a run of 2 / 4: 73.1 / 72.6), 72.3 with the fresh-run
    # escalation above; held-out archetypes 69.2 -> 74.0 with both.
    sustained_run: int = 3
    # Isolation forest shared by the series scored together: first fit once the reservoir
    # holds `ml_min_train` windows, refitted every `ml_retrain_every` time steps (0: only
    # when `retrain()` is called, the scheduled daily job) on up to `ml_reservoir` windows
    # sampled at `ml_sample_rate` from everything scored.
    ml_min_train: int = 256
    ml_retrain_every: int = 2016
    ml_reservoir: int = 4096
    ml_sample_rate: float = 0.1
    ml_trees: int = 24
    ml_max_samples: int = 256

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def alpha(span: float) -> float:
    """Smoothing factor of an exponential average whose centre of mass matches `span` points."""
    return 2.0 / (span + 1.0)

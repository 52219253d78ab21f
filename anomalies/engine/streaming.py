"""The streaming detector: one state for many series, advanced over new points only.

All per-series state lives in arrays whose first axis is the series, so one time step of
10,000 series is a few dozen numpy operations, and a week of one-minute data for 1,000
series is a loop of 10,080 such steps. The score of a point is computed from the state
*before* the point is learned, so it uses only data up to that point (causal), and scoring
a history in one call or in many small calls gives the same numbers: the scheduled job
keeps each series' state and feeds it only what arrived since its last run.

Batches are rectangular: series with fewer new points are padded at the end with NaN
timestamps, which leave their state untouched. A NaN *value* at a real timestamp is
missing data and is scored as such.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import numpy as np

from . import baseline, collapse, flatline, learned, pattern, statistical
from .calibration import TailCalibrator, score_from_surprisal
from .config import FAMILIES, DetectorConfig
from .evidence import EvidenceRanker
from .pause import PauseState, damp_repeats
from .range_record import RangeRecord
from .rules import ThresholdRule, evaluate_rules
from .sustained import SustainedEvidence
from .tuning import DIRECTIONS, Tuning, alert_surprisal, evidence_factor, tuned_evidence

_HURDLES = statistical.HURDLES + pattern.HURDLES
_ARRAY_KEYS = ("count", "t_prev", "y_prev", "step", "cooldown_left", "cooldown_bar", "cooldown_run")
# Bumped whenever the serialised layout of a series' state changes.
STATE_VERSION = 8


def is_current_state(blob: bytes) -> bool:
    """True when `blob` was written in this detector's state layout (see `series_state`)."""
    size = int.from_bytes(blob[:4], "little")
    try:
        header = json.loads(blob[4 : 4 + size])
    except ValueError:
        return False
    return isinstance(header, dict) and header.get("version") == STATE_VERSION


@dataclass
class ScoreResult:
    """Scores of a (series, time) block plus what each method said about every point."""

    scores: np.ndarray  # (S, T) combined score in [0, 1], NaN on padding
    # (S, T) the same before repeats were damped: "still abnormal?"; the evidence ranked
    # against the series' own history (evidence.py), mapped to [0, 1).
    combined: np.ndarray
    total: np.ndarray  # (S, T) weighted sum of the families' surprisals (raw evidence)
    surprisal: dict[str, np.ndarray]  # family -> (S, T) -log10 tail probability
    expected: np.ndarray  # (S, T) expected value before the point was seen
    scale: np.ndarray  # (S, T) one standard deviation around `expected`
    vote_surprisal: float
    # (S, T) the part of the pattern family that says the data stopped (a stuck value or
    # missing points): such an anomaly has no deviation size, so severity judges it on
    # improbability alone.
    stalled: np.ndarray
    # (S, T) the part of the pattern family that says a positive series collapsed to a
    # fraction of its expected value (collapse.py): its size in residual scales understates
    # it, so severity judges it on improbability alone too.
    collapsed: np.ndarray
    # Per series: {column of the block: names of the operator rules that fired there}. An
    # operator with several rules on a series (a warning and a critical threshold) has to
    # know which one it was; the rules family alone only says "a rule".
    rules_fired: list[dict[int, tuple[str, ...]]] = field(default_factory=list)

    def votes(self) -> dict[str, np.ndarray]:
        """family -> (S, T) bool: did the method call this point anomalous on its own."""
        return {f: s >= self.vote_surprisal for f, s in self.surprisal.items()}

    def any_vote(self) -> np.ndarray:
        """(S, T) bool: did at least one method call this point anomalous."""
        return np.logical_or.reduce(list(self.votes().values()))


class StreamingDetector:
    """Per-series detector state for S series, advanced by `update`."""

    def __init__(
        self,
        n_series: int,
        config: DetectorConfig | None = None,
        fleets: np.ndarray | None = None,
    ) -> None:
        """`fleets` numbers the learned-model group of each series (default: one group)."""
        self.config = cfg = config or DetectorConfig()
        self.n_series = n_series
        self.count = np.zeros(n_series)
        self.t_prev = np.full(n_series, np.nan)
        self.y_prev = np.full(n_series, np.nan)
        self.step = np.full(n_series, np.inf)
        # The alert pause of each series (pause.PauseState: left, bar, run).
        self.cooldown_left = np.zeros(n_series)
        self.cooldown_bar = np.zeros(n_series)
        self.cooldown_run = np.zeros(n_series)
        self.base = baseline.new_baseline_state(n_series)
        self.stat = statistical.new_statistical_state(n_series)
        self.pat = pattern.new_pattern_state(n_series)
        self.flat = flatline.new_flatline_state(n_series)
        self.collapse = collapse.new_collapse_state(n_series)
        self.z_lags = np.zeros((n_series, learned.FEATURE_LAGS))
        self.calibrator = TailCalibrator(n_series, _HURDLES, cfg.calibration_span)
        # Isolation scores live in (0, 1] with a narrow spread, hence a small excess floor.
        self.learned_calibrator = TailCalibrator(
            n_series, (learned.HURDLE,), cfg.calibration_span, min_beta=0.005
        )
        self.ranker = EvidenceRanker(n_series, cfg.evidence_span, cfg.record_bonus)
        self.range = RangeRecord(n_series, cfg)
        self.sustained = SustainedEvidence(
            n_series, cfg.sustained_run, cfg.evidence_span, cfg.record_bonus
        )
        # Learned models (see learned.py), one per fleet of series; time steps since the start.
        self.fleet_of = np.zeros(n_series, int) if fleets is None else np.asarray(fleets, int)
        if self.fleet_of.shape != (n_series,) or (n_series and self.fleet_of.min() < 0):
            raise ValueError("fleets must give a non-negative group number for every series")
        n_fleets = int(self.fleet_of.max()) + 1 if n_series else 1
        self.fleets = [learned.Fleet() for _ in range(n_fleets)]
        self.steps = 0
        self.rules: list[list[ThresholdRule]] = [[] for _ in range(n_series)]
        self.breach_since: list[dict[str, float | None]] = [{} for _ in range(n_series)]
        # Operators' tunings (tuning.py): not state, set for each run like the rules.
        self.evidence_factor = np.ones(n_series)
        self.direction = np.zeros(n_series)

    def tune(self, tunings: list[Tuning | None]) -> None:
        """Set each series' sensitivity and direction (None: the defaults)."""
        if len(tunings) != self.n_series:
            raise ValueError("give one tuning (or None) per series")
        alert_at = alert_surprisal(self.config.alert_score, self.config.score_half_surprisal)
        for s, t in enumerate(tunings):
            t = t or Tuning()
            self.evidence_factor[s] = evidence_factor(t.sensitivity, alert_at)
            self.direction[s] = DIRECTIONS[t.direction]

    # ------------------------------------------------------------------ scoring
    def update(self, ts: np.ndarray, values: np.ndarray, auto_retrain: bool = True) -> ScoreResult:
        """Score new points (S, T) and learn from them. Trailing NaN timestamps are padding."""
        ts = np.atleast_2d(np.asarray(ts, dtype=float))
        values = np.atleast_2d(np.asarray(values, dtype=float))
        if ts.shape != values.shape or ts.shape[0] != self.n_series:
            raise ValueError(f"expected arrays of shape ({self.n_series}, T), got {ts.shape}")
        n_s, n_t = ts.shape
        families = {f: np.zeros((n_s, n_t), np.float32) for f in FAMILIES}
        expected = np.full((n_s, n_t), np.nan, np.float32)
        scale = np.full((n_s, n_t), np.nan, np.float32)
        stalled = np.zeros((n_s, n_t), np.float32)
        collapsed = np.zeros((n_s, n_t), np.float32)
        lean = np.zeros((n_s, n_t), np.float32)
        features = np.zeros((n_s, n_t, learned.N_FEATURES), np.float32)
        # The sampling step as known at each point: a pause opened there is sized by it,
        # not by what the rest of the batch later reveals.
        step_at = np.full((n_s, n_t), np.nan)
        valid_all = np.isfinite(values) & np.isfinite(ts)
        t_before = self.t_prev.copy()  # each series' point before this block, for the rules
        seen_before = self.count[:, None] + np.cumsum(valid_all, axis=1) - valid_all
        for j in range(n_t):
            self._step(
                ts[:, j],
                values[:, j],
                j,
                families,
                (expected, scale, stalled, collapsed, lean),
                features,
            )
            step_at[:, j] = self.step
        burned = seen_before >= self.config.burn_in
        self._learned_pass(features, valid_all, burned, families["learned"], auto_retrain)
        rules_fired = self._rules_pass(ts, values, families["rules"], t_before)
        for surprisal in families.values():
            np.minimum(surprisal, self.config.max_surprisal, out=surprisal)
        w = self.config.weights
        total = sum(w[f] * families[f].astype(float) for f in FAMILIES)
        ranked = np.zeros((n_s, n_t))
        record = np.zeros((n_s, n_t))
        floor = np.zeros((n_s, n_t))
        run_ranked = np.zeros((n_s, n_t))
        learn = valid_all & burned
        for j in range(n_t):
            ranked[:, j] = self.ranker.surprisal_and_update(total[:, j], learn[:, j])
            record[:, j] = self.range.bonus_and_update(
                values[:, j], valid_all[:, j], expected[:, j], learn[:, j]
            )
            floor[:, j], run_ranked[:, j] = self.sustained.floor_and_surprisal(
                total[:, j], valid_all[:, j], learn[:, j]
            )
        # Rank alone would call the largest wobble of a quiet series a record: the ranked
        # surprisal (with any range-record bonus) is capped by the raw evidence, so an alert
        # also needs the methods themselves to find the point improbable. A sustained run
        # (sustained.py) is ranked and capped the same way on the floor of its evidence.
        per_surprisal = self.config.evidence_per_surprisal
        ranked = np.maximum(
            np.minimum(ranked + record, total / per_surprisal),
            np.minimum(run_ranked, floor / per_surprisal),
        )
        # An operator's rule is an anomaly by definition, however often it is breached.
        rules = w["rules"] * families["rules"]
        either_way = self._combined(ranked, lean, stalled, rules, ts, directed=False)
        combined = (
            self._combined(ranked, lean, stalled, rules, ts, directed=True)
            if self.direction.any()
            else either_way
        )
        # The alert pause is opened by deviations either way, and only then are those the
        # operator's direction drops taken out. A dip pulls the expected value down, and
        # for an hour the evidence that still holds it (the short average, a variance
        # shift) sits on points back above that expected value: with the dip dropped
        # before the pause, no pause held that echo and a latency tuned "above" alerted
        # minutes after every dip. So a direction only takes alerts away: those of the
        # series' sensitivity that lean the other way.
        scores = either_way.copy()
        self._suppress_repeats(scores, total, np.isfinite(ts), step_at)
        scores = np.minimum(scores, combined)
        return ScoreResult(
            scores,
            combined,
            total,
            families,
            expected,
            scale,
            self.config.vote_surprisal,
            stalled,
            collapsed,
            rules_fired,
        )

    def _step(self, t, x, j, families, outputs, features) -> None:
        """One time step of every series; `outputs` are the (S, T) arrays of the expected
        value, scale, stalled and collapsed parts, and the direction of the evidence."""
        expected_out, scale_out, stalled_out, collapsed_out, lean_out = outputs
        cfg = self.config
        active = np.isfinite(t)
        valid = active & np.isfinite(x)
        y = np.where(valid, x, np.nan_to_num(self.y_prev))
        slots = baseline.hour_slots(t)

        dt = t - self.t_prev
        seen = np.isfinite(self.t_prev)
        positive = active & seen & (dt > 0)
        gap = np.where(positive & np.isfinite(self.step), dt / self.step - 1.0, 0.0)
        gap = np.where(gap >= 0.5, np.round(gap), 0.0)

        exp = baseline.Expectation(self.base, slots, cfg)
        residual = y - exp.expected
        # The surge view's MAD is floored at a quarter of the residual scale, so that a
        # series stuck on one value does not turn its first wobble into infinite MADs.
        surge_floor = 0.25 * exp.scale
        raw = np.concatenate(
            [
                statistical.residual_statistics(
                    self.stat, residual, exp.scale, valid, self.count, cfg
                ),
                statistical.surge_statistic(self.stat, y, valid, self.count, surge_floor, cfg)[
                    :, None
                ],
                pattern.pattern_statistics(
                    self.pat,
                    y,
                    residual,
                    exp.scale,
                    exp.profile,
                    exp.profile_scale,
                    valid,
                    self.count,
                    cfg,
                ),
            ],
            axis=1,
        )
        # The first points' scales are guesses (z-scores of thousands): the calibrator only
        # starts learning halfway through the burn-in.
        settled = valid & (self.count >= cfg.burn_in // 2)
        surprisal = self.calibrator.surprisal_and_update(raw, settled)
        n_stat = len(statistical.STAT_NAMES)
        views = statistical.RESIDUAL_VIEWS
        # Which way the point leans: the signed residual view (point, short or medium
        # average) that is the most improbable, the one that speaks for the statistical
        # family. Neither the point alone nor the view farthest from 0 is it: just after a
        # dip the value is back above its expected value (pulled down by the dip), while
        # the short average still holding the dip is smaller in size but far rarer for an
        # average, and it carries the evidence. A point none of them finds improbable leans
        # the way of its largest view.
        signed = np.stack([residual, self.stat["short"], self.stat["medium"]], axis=1)
        rarest = np.where(
            surprisal[:, :views].max(axis=1) > 0.0,
            np.argmax(surprisal[:, :views], axis=1),
            np.argmax(np.abs(np.nan_to_num(signed)), axis=1),
        )
        lean_out[:, j] = np.where(valid, signed[np.arange(signed.shape[0]), rarest], 0.0)
        burned = self.count >= cfg.burn_in
        missing = pattern.missing_surprisal(gap, active & ~valid)
        stuck = flatline.flatline_surprisal(self.flat, y, self.y_prev, valid, cfg.calibration_span)
        fall = collapse.collapse_surprisal(self.collapse, y, exp.expected, valid, self.count, cfg)
        stat = surprisal[:, :views].max(axis=1) + surprisal[:, views]
        families["statistical"][:, j] = np.where(burned, stat, 0.0)
        stalled_out[:, j] = np.where(burned, np.maximum(missing, stuck), 0.0)
        collapsed_out[:, j] = np.where(burned, fall, 0.0)
        families["pattern"][:, j] = np.where(
            burned,
            np.maximum.reduce(
                [surprisal[:, n_stat:].max(axis=1), stalled_out[:, j], collapsed_out[:, j]]
            ),
            0.0,
        )
        expected_out[:, j] = np.where(active, exp.expected, np.nan)
        scale_out[:, j] = np.where(active, exp.scale, np.nan)

        z = np.clip(residual / exp.scale, -20.0, 20.0)
        self.z_lags = np.where(valid[:, None], np.roll(self.z_lags, 1, axis=1), self.z_lags)
        self.z_lags[:, 0] = np.where(valid, z, self.z_lags[:, 0])
        var_ratio = np.log((self.pat["variance"] + 1e-12) / (exp.scale**2 + 1e-12))
        features[:, j, : learned.FEATURE_LAGS] = self.z_lags
        features[:, j, learned.FEATURE_LAGS] = np.clip(self.stat["medium"] / exp.scale, -20, 20)
        features[:, j, learned.FEATURE_LAGS + 1] = np.clip(var_ratio, -20, 20)

        baseline.update_baseline(self.base, y, valid, self.count, self.step, slots, exp, cfg)
        self.step = np.where(positive, pattern.typical_step(self.step, dt), self.step)
        self.count = self.count + valid
        self.t_prev = np.where(active, t, self.t_prev)
        self.y_prev = np.where(valid, x, self.y_prev)

    def _learned_pass(self, features, valid, burned, out, auto_retrain: bool) -> None:
        """Score every valid point with its fleet's forest fitted before it; refit on schedule."""
        if len(self.fleets) == 1:  # the scheduled job's case: no copies
            raw = self._fleet_pass(self.fleets[0], features, valid, auto_retrain)
        else:
            raw = np.zeros(valid.shape)
            for number, fleet in enumerate(self.fleets):
                members = np.flatnonzero(self.fleet_of == number)
                if members.size:
                    raw[members] = self._fleet_pass(
                        fleet, features[members], valid[members], auto_retrain
                    )
        self.steps += valid.shape[1]
        for j in range(valid.shape[1]):
            scored = valid[:, j] & (raw[:, j] > 0)
            surprisal = self.learned_calibrator.surprisal_and_update(raw[:, j : j + 1], scored)
            out[:, j] = np.where(scored & burned[:, j], surprisal[:, 0], 0.0)

    def _fleet_pass(self, fleet, features, valid, auto_retrain: bool) -> np.ndarray:
        """Raw isolation scores of one fleet's block; learns its reservoir and refits it.

        The block is cut at refit boundaries (counted in time steps since the detector
        started, so one long call and many short calls cut at the same places). Sampling
        depends on a series' position within its fleet, not in the detector, so a fleet of
        one series scores the same alone or beside others.
        """
        cfg = self.config
        n_s, n_t = valid.shape
        rows = np.arange(n_s)[:, None]
        steps = self.steps + np.arange(n_t)[None, :]
        # Deterministic per (series, step) sampling: chunking does not change the sample.
        sampled = valid & (((rows * 7919 + steps * 104729) % 1000) < cfg.ml_sample_rate * 1000)
        cuts = {0, n_t}
        if auto_retrain and cfg.ml_retrain_every > 0:
            cuts.update(j for j in range(1, n_t) if (self.steps + j) % cfg.ml_retrain_every == 0)
        if fleet.forest is None:
            filled = fleet.reservoir.shape[0] + np.cumsum(sampled.sum(axis=0))
            ready = np.flatnonzero(filled >= cfg.ml_min_train)
            if ready.size:
                cuts.add(int(ready[0]) + 1)
        raw = np.zeros((n_s, n_t))
        for a, b in itertools.pairwise(sorted(cuts)):
            block_valid = valid[:, a:b]
            block = features[:, a:b]
            if fleet.forest is not None:
                raw[:, a:b][block_valid] = learned.isolation_depth_score(
                    fleet.forest, block[block_valid]
                )
            chosen = sampled[:, a:b].T  # time-major, so the reservoir keeps time order
            fleet.reservoir = np.concatenate(
                [fleet.reservoir, block.transpose(1, 0, 2)[chosen].astype(np.float32)]
            )[-cfg.ml_reservoir :]
            step_b = self.steps + b
            due = auto_retrain and cfg.ml_retrain_every > 0 and step_b % cfg.ml_retrain_every == 0
            if (due or fleet.forest is None) and fleet.reservoir.shape[0] >= cfg.ml_min_train:
                fleet.forest = learned.fit_forest(fleet.reservoir, cfg)
        return raw

    def retrain(self) -> bool:
        """Refit every fleet's forest on its reservoir now (the scheduled daily job)."""
        fitted = False
        for fleet in self.fleets:
            if fleet.reservoir.shape[0] >= self.config.ml_min_train:
                fleet.forest = learned.fit_forest(fleet.reservoir, self.config)
                fitted = True
        return fitted

    @property
    def fleet(self) -> learned.Fleet:
        """The learned model of a single-fleet detector (the scheduled job's)."""
        if len(self.fleets) != 1:
            raise ValueError("this detector holds several fleets")
        return self.fleets[0]

    def _rules_pass(self, ts, values, out, t_before) -> list[dict[int, tuple[str, ...]]]:
        """Rule breaches per series, and which rules fired at which column of the block; a
        breach does not carry over a silence of the series (SILENT_STEPS of its step) nor a
        block in which it had no rule (a rule disabled while breached and enabled hours
        later fired at its first point)."""
        fired_at: list[dict[int, tuple[str, ...]]] = [{} for _ in range(self.n_series)]
        for s, rules in enumerate(self.rules):
            if not rules:
                self.breach_since[s] = {}
                continue
            act = np.isfinite(ts[s])
            step = float(self.step[s])
            surprisal, fired, self.breach_since[s] = evaluate_rules(
                ts[s, act],
                values[s, act],
                rules,
                self.breach_since[s],
                prev_ts=float(t_before[s]),
                max_gap=pattern.SILENT_STEPS * step if np.isfinite(step) else np.inf,
            )
            out[s, act] = surprisal
            columns = np.flatnonzero(act)
            for name, mask in fired.items():
                for column in columns[mask].tolist():
                    fired_at[s][column] = (*fired_at[s].get(column, ()), name)
        return fired_at

    def _combined(self, ranked, lean, stalled, rules, ts, *, directed: bool) -> np.ndarray:
        """Scores in [0, 1) from ranked evidence under each series' sensitivity, and under
        its direction too when `directed` (NaN on padding)."""
        direction = self.direction if directed else np.zeros_like(self.direction)
        tuned = tuned_evidence(
            ranked, lean, stalled, self.evidence_factor, direction, self.config.vote_surprisal
        )
        combined = score_from_surprisal(
            np.maximum(tuned, rules), self.config.score_half_surprisal
        ).astype(np.float32)
        combined[~np.isfinite(ts)] = np.nan
        return combined

    def _suppress_repeats(
        self, scores: np.ndarray, total: np.ndarray, active: np.ndarray, step_at: np.ndarray
    ) -> None:
        """Damp repeats inside each series' alert pause (pause.py), carrying the pause."""
        for s in range(self.n_series):
            n = int(active[s].sum())
            step = step_at[s, :n]
            before = PauseState(
                int(self.cooldown_left[s]), float(self.cooldown_bar[s]), int(self.cooldown_run[s])
            )
            after = damp_repeats(scores[s, :n], total[s, :n], before, step, self.config)
            self.cooldown_left[s] = after.left
            self.cooldown_bar[s] = after.bar
            self.cooldown_run[s] = after.run

    # ------------------------------------------------------------- persistence
    def _state_arrays(self) -> list[np.ndarray]:
        """Every per-series array, in the fixed order of the serialised layout."""
        arrays = [getattr(self, k) for k in _ARRAY_KEYS]
        for group in self._state_groups().values():
            arrays.extend(group[k] for k in sorted(group))
        arrays.append(self.z_lags)
        return arrays

    def series_state(self, s: int) -> bytes:
        """The state of series `s`: a small JSON header, then its numbers as float64.

        A flat vector in a fixed layout costs microseconds to write and read, which matters
        when the scheduled job stores 10,000 states a minute; no pickle is involved.
        """
        header = json.dumps(
            {"version": STATE_VERSION, "breach_since": self.breach_since[s]}
        ).encode()
        flat = np.concatenate([a[s].ravel() for a in self._state_arrays()])
        return len(header).to_bytes(4, "little") + header + flat.astype("<f8").tobytes()

    def fleet_state(self) -> bytes:
        """The shared learned model: forest, reservoir of windows and step counter."""
        return learned.dump_fleet(self.fleet.forest, self.fleet.reservoir, self.steps)

    def _state_groups(self) -> dict[str, dict[str, np.ndarray]]:
        return {
            "base": self.base,
            "stat": self.stat,
            "pat": self.pat,
            "flat": self.flat,
            "collapse": self.collapse,
            "cal": self.calibrator.state(),
            "lcal": self.learned_calibrator.state(),
            "evid": self.ranker.state(),
            "range": self.range.state(),
            "sust": self.sustained.state(),
        }

    @classmethod
    def from_states(
        cls,
        states: list[bytes | None],
        fleet: bytes | None = None,
        rules: list[list[ThresholdRule]] | None = None,
        config: DetectorConfig | None = None,
        tunings: list[Tuning | None] | None = None,
    ) -> StreamingDetector:
        """Stack stored per-series states (None = a new series) into one detector."""
        det = cls(len(states), config)
        arrays = det._state_arrays()
        widths = [int(np.prod(a.shape[1:], dtype=int)) for a in arrays]
        known = [s for s, blob in enumerate(states) if blob is not None]
        if known:
            rows = []
            for s in known:
                blob = states[s]
                size = int.from_bytes(blob[:4], "little")
                header = json.loads(blob[4 : 4 + size])
                if header.get("version") != STATE_VERSION:
                    raise ValueError(f"state of series #{s} has an unknown layout version")
                det.breach_since[s] = header["breach_since"]
                rows.append(np.frombuffer(blob[4 + size :], dtype="<f8"))
            matrix = np.vstack(rows)
            if matrix.shape[1] != sum(widths):
                raise ValueError("stored states do not match this detector's layout")
            offset = 0
            for array, width in zip(arrays, widths, strict=True):
                block = matrix[:, offset : offset + width]
                array[known] = block.reshape((len(known), *array.shape[1:]))
                offset += width
        if fleet is not None:
            det.fleet.forest, det.fleet.reservoir, det.steps = learned.load_fleet(fleet)
        if rules is not None:
            det.rules = [list(r) for r in rules]
        if tunings is not None:
            det.tune(tunings)
        return det

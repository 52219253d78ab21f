"""One experiment's full analysis from per-variant summaries.

Puts the pieces of :mod:`.stats` and :mod:`.sequential` together the way an
experiment report needs them: each arm's own value with its interval, every
treatment against the control, Holm correction across treatments (for the
fixed-horizon and the sequential p-values), a sample-ratio-mismatch check on the
arm sizes, the sequential state to carry to the next look and, given the minimum effect
of interest, each treatment's power figures (:mod:`.power`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from .power import PowerEstimate, power_estimates
from .sequential import SequentialLook, SequentialState, sequential_look
from .stats import (
    ArmEstimate,
    FixedHorizonResult,
    SrmResult,
    chance_to_beat_control_binomial,
    chance_to_beat_control_normal,
    holm_adjust,
    srm_check,
    t_interval,
    two_proportion_test,
    welch_test,
    wilson_interval,
)

MetricKind = Literal["conversion", "mean"]


@dataclass(frozen=True)
class VariantSummary:
    """Sufficient statistics of one arm for one metric.

    For a conversion metric ``total`` is the number of converted users; for a mean
    metric ``total`` is the sum and ``total_sq`` the sum of squares of the
    per-user values (users without the event count as 0).
    """

    name: str
    users: int
    total: float
    total_sq: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.users if self.users else float("nan")

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1) from the sums."""
        if self.users < 2:
            return float("nan")
        # ``total * total``, not ``total**2``: a float power raises OverflowError where the
        # product is inf (NaN here), which the callers report instead of failing.
        return max((self.total_sq - self.total * self.total / self.users) / (self.users - 1), 0.0)


@dataclass(frozen=True)
class VariantComparison:
    variant: str
    fixed: FixedHorizonResult
    p_value_holm: float
    chance_to_beat_control: float
    sequential: SequentialLook
    sequential_p_value_holm: float


@dataclass(frozen=True)
class ExperimentAnalysis:
    metric_kind: MetricKind
    alpha: float
    control: str
    users: dict[str, int]
    srm: SrmResult
    comparisons: list[VariantComparison] = field(default_factory=list)
    arms: list[ArmEstimate] = field(default_factory=list)
    power: list[PowerEstimate] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready (infinite bounds become None)."""
        return _json_clean(asdict(self))


def _json_clean(value):
    """Non-finite floats become None: JSON (and PostgreSQL's jsonb) has no NaN or inf."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    return value


def dataclass_to_json(value) -> dict:
    """Any result dataclass of the engine as JSON-ready (non-finite floats become None)."""
    return _json_clean(asdict(value))


def arms_to_json(arms: Sequence[ArmEstimate]) -> list[dict]:
    """Arm estimates as stored with a result, shaped like ``to_dict()["arms"]``."""
    return _json_clean([asdict(a) for a in arms])


def arm_estimates(
    summaries: Sequence[VariantSummary], *, metric_kind: MetricKind, alpha: float = 0.05
) -> list[ArmEstimate]:
    """Each arm's own rate (Wilson score interval) or mean per user (t interval).

    Separate from the comparisons because it is defined for arms too small to
    compare (a rate from one user): the service stores them even while a result
    still waits for two users in every arm.
    """
    if metric_kind not in ("conversion", "mean"):
        raise ValueError(f"unknown metric kind {metric_kind!r}")
    arms = []
    for s in summaries:
        if metric_kind == "conversion":
            if s.users < 1:
                arms.append(ArmEstimate(s.name, s.users, None, None, "wilson"))
                continue
            ci = wilson_interval(s.total, s.users, alpha=alpha)
            arms.append(ArmEstimate(s.name, s.users, s.total / s.users, ci, "wilson"))
        elif s.users < 2:
            value = s.mean if s.users else None
            arms.append(ArmEstimate(s.name, s.users, value, None, "t"))
        else:
            ci = t_interval(s.mean, s.variance, s.users, alpha=alpha)
            arms.append(ArmEstimate(s.name, s.users, s.mean, ci, "t"))
    return arms


def analyse_experiment(
    summaries: Sequence[VariantSummary],
    *,
    weights: Sequence[float],
    metric_kind: MetricKind,
    alpha: float = 0.05,
    n_planned: int = 10_000,
    previous_states: Mapping[str, SequentialState] | None = None,
    minimum_effect: float | None = None,
    exposures_per_day: float | None = None,
) -> ExperimentAnalysis:
    """Compare every variant to the first one (the control).

    With ``minimum_effect`` (a relative lift) each treatment also gets its power figures
    at 80% power: MDE now, users needed for that effect and the days they take at
    ``exposures_per_day`` (None: no estimate of the days).
    """
    if len(summaries) < 2:
        raise ValueError("an experiment needs a control and at least one treatment")
    if metric_kind not in ("conversion", "mean"):
        raise ValueError(f"unknown metric kind {metric_kind!r}")
    previous_states = previous_states or {}
    control, treatments = summaries[0], list(summaries[1:])
    srm = srm_check([s.users for s in summaries], weights)

    raw = []
    for t in treatments:
        if metric_kind == "conversion":
            fixed = two_proportion_test(control.total, control.users, t.total, t.users, alpha=alpha)
            ctbc = chance_to_beat_control_binomial(control.total, control.users, t.total, t.users)
            var_diff = (
                fixed.control_value * (1 - fixed.control_value) / control.users
                + fixed.treatment_value * (1 - fixed.treatment_value) / t.users
            )
        else:
            fixed = welch_test(
                control.mean, control.variance, control.users, t.mean, t.variance, t.users,
                alpha=alpha,
            )  # fmt: skip
            se_c = np.sqrt(control.variance / control.users)
            se_t = np.sqrt(t.variance / t.users)
            ctbc = chance_to_beat_control_normal(control.mean, se_c, t.mean, se_t)
            var_diff = se_c**2 + se_t**2
        seq = sequential_look(
            fixed.difference,
            var_diff,
            control.users + t.users,
            alpha=alpha,
            n_planned=n_planned,
            previous=previous_states.get(t.name),
        )
        raw.append((t.name, fixed, ctbc, seq))

    holm_fixed = holm_adjust([r[1].p_value for r in raw])
    holm_seq = holm_adjust([r[3].p_value for r in raw])
    comparisons = [
        VariantComparison(name, fixed, float(hf), ctbc, seq, float(hs))
        for (name, fixed, ctbc, seq), hf, hs in zip(raw, holm_fixed, holm_seq, strict=True)
    ]
    power = []
    if minimum_effect is not None:
        power = power_estimates(
            [(s.name, s.users, s.mean, float(np.sqrt(s.variance))) for s in summaries],
            weights=weights,
            metric_kind=metric_kind,
            alpha=alpha,
            target_relative=minimum_effect,
            exposures_per_day=exposures_per_day,
        )
    return ExperimentAnalysis(
        metric_kind=metric_kind,
        alpha=alpha,
        control=control.name,
        users={s.name: s.users for s in summaries},
        srm=srm,
        comparisons=comparisons,
        arms=arm_estimates(summaries, metric_kind=metric_kind, alpha=alpha),
        power=power,
    )

"""How the use of each product feature relates to an outcome (retention, conversion).

Two views that check each other:

1. Odds ratios from 2x2 tables (used / not used x success / failure), smoothed with a
   prior count of 1 per cell and kept only when enough users used the feature, the way
   PostHog's funnel correlation analysis does. Simple, readable ("users of search
   convert at 2.3x the odds"), with a Woolf confidence interval and Fisher's exact
   p-value corrected for testing many features at once (Benjamini-Hochberg).
2. A classifier of the outcome from all features together (gradient boosting or
   logistic regression) scored by AUC on held-out users, with permutation importance
   measured on the held-out users. It credits a feature only for what the other
   features do not already explain.

Suggestions combine the two: a feature with high impact that few use should be
promoted; one with no measurable impact that costs a lot should be reviewed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from insights.engine.threads import single_threaded

# PostHog's funnel correlation defaults: one pseudo-count per cell, and a feature is kept
# when at least min(25 users, 2% of users) used it.
PRIOR_COUNT = 1.0
MIN_USERS = 25
MIN_SHARE = 0.02

MODEL_KINDS = ("gradient_boosting", "logistic")


@dataclass(frozen=True)
class ContingencyTable:
    feature: str
    used_success: int
    used_failure: int
    unused_success: int
    unused_failure: int

    @property
    def used(self) -> int:
        return self.used_success + self.used_failure

    @property
    def total(self) -> int:
        return self.used + self.unused_success + self.unused_failure


@dataclass(frozen=True)
class OddsRatio:
    feature: str
    odds_ratio: float  # smoothed
    ci_low: float  # 95% Woolf interval on the smoothed table
    ci_high: float
    p_value: float  # Fisher's exact test, two-sided
    q_value: float  # Benjamini-Hochberg adjusted over all features kept
    adoption: float  # share of users who used the feature
    success_rate_used: float
    success_rate_unused: float
    support: int  # users who used the feature

    @property
    def direction(self) -> str:
        return "success" if self.odds_ratio >= 1 else "failure"

    @property
    def significant(self) -> bool:
        return self.q_value < 0.05 and not (self.ci_low <= 1.0 <= self.ci_high)


def contingency_tables(
    usage: np.ndarray, outcome: np.ndarray, feature_names: Sequence[str]
) -> list[ContingencyTable]:
    """2x2 tables for every feature from a (users x features) usage matrix."""
    used = np.asarray(usage) > 0
    y = np.asarray(outcome).astype(bool)
    if used.ndim != 2 or used.shape[0] != y.shape[0] or used.shape[1] != len(feature_names):
        raise ValueError("usage must be (users x features) matching outcome and names")
    tables = []
    for j, name in enumerate(feature_names):
        u = used[:, j]
        tables.append(
            ContingencyTable(
                feature=name,
                used_success=int(np.sum(u & y)),
                used_failure=int(np.sum(u & ~y)),
                unused_success=int(np.sum(~u & y)),
                unused_failure=int(np.sum(~u & ~y)),
            )
        )
    return tables


def odds_ratios(
    tables: Sequence[ContingencyTable],
    *,
    prior: float = PRIOR_COUNT,
    min_users: int = MIN_USERS,
    min_share: float = MIN_SHARE,
) -> list[OddsRatio]:
    """Smoothed odds ratios for features with enough support, strongest effect first."""
    kept: list[tuple[ContingencyTable, float, float, float, float]] = []
    for t in tables:
        if t.total == 0:
            continue
        threshold = min(min_users, min_share * t.total)
        # Without users on both sides, there is nothing to compare.
        if t.used < threshold or t.used == t.total:
            continue
        a = t.used_success + prior
        b = t.used_failure + prior
        c = t.unused_success + prior
        d = t.unused_failure + prior
        log_or = np.log(a * d / (b * c))
        se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
        p = stats.fisher_exact(
            [[t.used_success, t.used_failure], [t.unused_success, t.unused_failure]]
        ).pvalue
        kept.append((t, float(log_or), float(se), float(p), 0.0))
    if not kept:
        return []
    q = stats.false_discovery_control([k[3] for k in kept], method="bh")
    out = []
    for (t, log_or, se, p, _), qv in zip(kept, q, strict=True):
        unused = t.total - t.used
        out.append(
            OddsRatio(
                feature=t.feature,
                odds_ratio=float(np.exp(log_or)),
                ci_low=float(np.exp(log_or - 1.96 * se)),
                ci_high=float(np.exp(log_or + 1.96 * se)),
                p_value=p,
                q_value=float(qv),
                adoption=t.used / t.total,
                success_rate_used=t.used_success / t.used,
                success_rate_unused=t.unused_success / unused if unused else float("nan"),
                support=t.used,
            )
        )
    return sorted(out, key=lambda r: -abs(np.log(r.odds_ratio)))


@dataclass(frozen=True)
class FeatureImportance:
    feature: str
    importance: float  # mean drop of held-out AUC when the feature is shuffled
    std: float

    @property
    def reliable(self) -> bool:
        """Importance clearly above zero (two standard deviations)."""
        return self.importance - 2 * self.std > 0


@dataclass
class ImpactModelResult:
    model_kind: str
    auc_holdout: float
    importances: list[FeatureImportance]  # sorted by importance desc
    model: Pipeline
    feature_names: tuple[str, ...]
    n_train: int
    n_holdout: int
    outcome_rate: float
    params: dict[str, object]
    # Rows (users of the input) the model was not trained on, for a fair comparison with
    # an older version on the ones it did not see either.
    holdout_index: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))

    @property
    def metrics(self) -> dict[str, float]:
        return {"auc": self.auc_holdout, "outcome_rate": self.outcome_rate}


def _make_model(kind: str, random_state: int) -> Pipeline:
    if kind == "gradient_boosting":
        return make_pipeline(
            HistGradientBoostingClassifier(
                max_iter=150, learning_rate=0.1, max_leaf_nodes=15, random_state=random_state
            )
        )
    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")


@single_threaded
def fit_impact_model(
    usage: np.ndarray,
    outcome: np.ndarray,
    feature_names: Sequence[str],
    *,
    model_kind: str = "gradient_boosting",
    holdout_share: float = 0.3,
    n_repeats: int = 10,
    random_state: int = 0,
) -> ImpactModelResult:
    """Fit outcome ~ feature use; AUC and permutation importance on held-out users.

    Importance is measured on the held-out users: measured on training rows, a flexible
    model would credit features it merely memorised.
    """
    x = np.asarray(usage, dtype=float)
    y = np.asarray(outcome).astype(int)
    names = tuple(feature_names)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != len(names):
        raise ValueError("usage must be (users x features) matching outcome and names")
    if not np.all(np.isfinite(x)):
        raise ValueError("usage contains NaN or infinite values")
    positives = int(y.sum())
    if positives < 5 or len(y) - positives < 5:
        raise ValueError("outcome needs at least 5 successes and 5 failures")
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=holdout_share, random_state=random_state, stratify=y
    )
    x_train, x_test, y_train, y_test = x[train_idx], x[test_idx], y[train_idx], y[test_idx]
    model = _make_model(model_kind, random_state).fit(x_train, y_train)
    auc = float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))
    perm = permutation_importance(
        model, x_test, y_test, scoring="roc_auc", n_repeats=n_repeats, random_state=random_state
    )
    importances = sorted(
        (
            FeatureImportance(name, float(perm.importances_mean[j]), float(perm.importances_std[j]))
            for j, name in enumerate(names)
        ),
        key=lambda f: -f.importance,
    )
    return ImpactModelResult(
        model_kind=model_kind,
        auc_holdout=auc,
        importances=importances,
        model=model,
        feature_names=names,
        n_train=len(y_train),
        n_holdout=len(y_test),
        outcome_rate=float(y.mean()),
        params={
            "model_kind": model_kind,
            "holdout_share": holdout_share,
            "n_repeats": n_repeats,
            "random_state": random_state,
        },
        holdout_index=np.sort(test_idx),
    )


@dataclass(frozen=True)
class FeatureSuggestion:
    feature: str
    action: str  # "promote" or "review"
    reason: str
    odds_ratio: float
    importance: float
    adoption: float
    cost: float | None


def suggest_feature_actions(
    ratios: Sequence[OddsRatio],
    importances: Sequence[FeatureImportance],
    *,
    costs: Mapping[str, float] | None = None,
    low_adoption: float | None = None,
    high_cost_quantile: float = 0.75,
) -> list[FeatureSuggestion]:
    """Promote high-impact, low-adoption features; review low-impact, high-cost ones.

    "High impact" needs both views to agree: a significant odds ratio above 1 *and* a
    reliable permutation importance, so a feature that merely travels with an important
    one is not promoted. "Low adoption" defaults to below the median adoption of the
    features analysed; "high cost" to above the 75th percentile of the costs given (ties are not high).
    """
    imp = {f.feature: f for f in importances}
    if not ratios:
        return []
    adoption_cut = (
        low_adoption if low_adoption is not None else float(np.median([r.adoption for r in ratios]))
    )
    cost_cut = None
    if costs:
        cost_cut = float(np.quantile(list(costs.values()), high_cost_quantile))
    out = []
    for r in ratios:
        fi = imp.get(r.feature)
        importance = fi.importance if fi else 0.0
        cost = costs.get(r.feature) if costs else None
        high_impact = r.significant and r.odds_ratio > 1 and fi is not None and fi.reliable
        low_impact = not r.significant and (fi is None or not fi.reliable)
        if high_impact and r.adoption < adoption_cut:
            out.append(
                FeatureSuggestion(
                    feature=r.feature,
                    action="promote",
                    reason=(
                        f"users of {r.feature} reach the outcome at {r.odds_ratio:.1f}x the odds "
                        f"(95% CI {r.ci_low:.1f}-{r.ci_high:.1f}) yet only "
                        f"{r.adoption:.0%} use it"
                    ),
                    odds_ratio=r.odds_ratio,
                    importance=importance,
                    adoption=r.adoption,
                    cost=cost,
                )
            )
        elif low_impact and cost is not None and cost_cut is not None and cost > cost_cut:
            out.append(
                FeatureSuggestion(
                    feature=r.feature,
                    action="review",
                    reason=(
                        f"{r.feature} shows no measurable effect on the outcome "
                        f"(odds ratio {r.odds_ratio:.2f}, q={r.q_value:.2f}) but is among the "
                        f"costliest features ({cost:.3g})"
                    ),
                    odds_ratio=r.odds_ratio,
                    importance=importance,
                    adoption=r.adoption,
                    cost=cost,
                )
            )
    return out

"""Behavioural user segmentation.

Users are described by counts of what they do (sessions, feature uses, shortcuts,
purchases...). Counts are heavy-tailed, so they are log-transformed (otherwise one power
user would define a segment on their own), split into the mix of behaviours and the
overall activity level (see ``behaviour_profile``), and standardised before clustering.

The number of segments is not a guess: every k in a range is fitted and the k (and
optionally the algorithm, KMeans or a Gaussian mixture) with the best silhouette on the
training rows wins. The reported score is the silhouette of *held-out* rows assigned by
the fitted model, so the registry shows how well the segments generalise, not how well
they fit the rows they were made from.

Each segment is then described by what sets it apart: for every feature, the
standardised difference of the segment mean from the population mean (an effect size)
and the z statistic of that difference (how sure we are it is not noise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from insights.engine.threads import single_threaded

METHODS = ("kmeans", "gmm")

# A feature "sets a segment apart" when the segment mean is at least this many population
# standard deviations from the population mean and the difference is unlikely to be noise.
MIN_EFFECT = 0.5
MIN_Z = 3.0


@dataclass(frozen=True)
class FeatureDeviation:
    """How far one segment sits from the population on one feature."""

    feature: str
    segment_mean: float
    population_mean: float
    effect: float  # (segment mean - population mean) / population std, on raw values
    z: float  # effect scaled by sqrt(n) with finite-population correction

    @property
    def direction(self) -> str:
        return "high" if self.effect > 0 else "low"


@dataclass(frozen=True)
class SegmentProfile:
    """One segment: its size and the features that distinguish it, strongest first."""

    label: int
    size: int
    share: float
    deviations: tuple[FeatureDeviation, ...]  # every feature, sorted by |effect| desc
    centroid: tuple[float, ...]  # in the standardised space, used to match segments
    # Root-mean-square distance of the members from the centroid, same space: the yardstick
    # a centroid's move between versions is measured against (see ``match_segments``).
    spread: float = float("nan")

    @property
    def distinguishing(self) -> tuple[FeatureDeviation, ...]:
        return tuple(
            d for d in self.deviations if abs(d.effect) >= MIN_EFFECT and abs(d.z) >= MIN_Z
        )

    @property
    def name(self) -> str:
        """A readable name built from the two strongest distinguishing features."""
        top = self.distinguishing[:2]
        if not top:
            return "typical users"
        return ", ".join(f"{d.direction} {d.feature.replace('_', ' ')}" for d in top)


@dataclass
class SegmentationResult:
    method: str
    k: int
    labels: np.ndarray  # label of every input row (train and held-out)
    silhouette_train: float
    silhouette_holdout: float
    silhouette_by_candidate: dict[str, float]  # "kmeans:3" -> train silhouette
    profiles: list[SegmentProfile]
    model: Pipeline  # log1p -> StandardScaler -> clusterer; .predict() assigns new users
    feature_names: tuple[str, ...]
    n_train: int
    n_holdout: int
    params: dict[str, object] = field(default_factory=dict)
    # Rows (of the input) the model was not trained on: with rows an older version did
    # not see either, the registry compares the two on equal terms.
    holdout_index: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))

    @property
    def metrics(self) -> dict[str, float]:
        return {
            "silhouette": self.silhouette_holdout,
            "silhouette_train": self.silhouette_train,
            "k": float(self.k),
        }


def _preprocessor() -> list[tuple[str, object]]:
    return [
        ("profile", FunctionTransformer(behaviour_profile)),
        ("scale", StandardScaler()),
    ]


def behaviour_profile(x: np.ndarray) -> np.ndarray:
    """Split each user's counts into *what* they do and *how much* they do.

    Columns: log1p(count) minus the user's mean log1p(count) (the mix of behaviours),
    then that mean itself (overall activity). Without the split, activity dominates:
    a busy explorer and a quiet explorer land in different segments, and busy users of
    every kind land together. On the synthetic population of four kinds the split
    took the adjusted Rand index from about 0.7 to about 0.97 and made the silhouette
    pick the true number of kinds (bench/insights.py measures it).
    """
    logs = np.log1p(np.clip(np.asarray(x, dtype=float), 0.0, None))
    level = logs.mean(axis=1, keepdims=True)
    return np.hstack([logs - level, level])


def _make_clusterer(method: str, k: int, random_state: int) -> KMeans | GaussianMixture:
    if method == "kmeans":
        return KMeans(n_clusters=k, n_init=10, random_state=random_state)
    if method == "gmm":
        return GaussianMixture(
            n_components=k, covariance_type="diag", n_init=3, random_state=random_state
        )
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def _silhouette(x: np.ndarray, labels: np.ndarray, sample_size: int, seed: int) -> float:
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return float("nan")
    size = min(sample_size, len(labels))
    return float(silhouette_score(x, labels, sample_size=size, random_state=seed))


@single_threaded
def segment_users(
    features: np.ndarray,
    feature_names: Sequence[str],
    *,
    k_range: Sequence[int] = range(2, 9),
    methods: Sequence[str] = ("kmeans",),
    holdout_share: float = 0.25,
    random_state: int = 0,
    silhouette_sample: int = 3000,
) -> SegmentationResult:
    """Cluster users, choosing algorithm and k by training silhouette.

    ``features`` is (n_users, n_features) of non-negative behavioural counts. Rows are
    split into training and held-out parts; the winner is refitted on the training part
    only, and the held-out silhouette is the honest score stored in the registry.
    """
    x = np.asarray(features, dtype=float)
    names = tuple(feature_names)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError("features must be 2-D with one column per feature name")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinite values")
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    n = x.shape[0]
    candidates = sorted({int(k) for k in k_range if int(k) >= 2})
    if not candidates:
        raise ValueError("k_range must contain at least one k >= 2")
    n_holdout = max(round(n * holdout_share), 3)
    if n - n_holdout < max(candidates) * 2 or n_holdout < 3:
        raise ValueError(f"too few users ({n}) to segment into up to {max(candidates)} groups")

    idx = np.arange(n)
    train_idx, holdout_idx = train_test_split(
        idx, test_size=n_holdout, random_state=random_state, shuffle=True
    )
    prep = Pipeline(_preprocessor()).fit(x[train_idx])
    z_train = prep.transform(x[train_idx])

    scores: dict[str, float] = {}
    best: tuple[float, str, int] | None = None
    for method in methods:
        for k in candidates:
            clusterer = _make_clusterer(method, k, random_state)
            labels = clusterer.fit_predict(z_train)
            score = _silhouette(z_train, labels, silhouette_sample, random_state)
            scores[f"{method}:{k}"] = score
            if np.isfinite(score) and (best is None or score > best[0]):
                best = (score, method, k)
    if best is None:
        raise ValueError("no candidate produced two or more segments")
    train_score, method, k = best

    model = Pipeline([*_preprocessor(), ("cluster", _make_clusterer(method, k, random_state))])
    model.fit(x[train_idx])
    labels_all = model.predict(x)
    z_holdout = model[:-1].transform(x[holdout_idx])
    holdout_score = _silhouette(z_holdout, labels_all[holdout_idx], silhouette_sample, random_state)
    profiles = describe_segments(x, labels_all, names, standardised=model[:-1].transform(x))
    return SegmentationResult(
        method=method,
        k=k,
        labels=labels_all,
        silhouette_train=train_score,
        silhouette_holdout=holdout_score,
        silhouette_by_candidate=scores,
        profiles=profiles,
        model=model,
        feature_names=names,
        n_train=len(train_idx),
        n_holdout=len(holdout_idx),
        params={
            "method": method,
            "k": k,
            "k_range": candidates,
            "methods": list(methods),
            "holdout_share": holdout_share,
            "random_state": random_state,
        },
        holdout_index=np.sort(holdout_idx),
    )


def describe_segments(
    features: np.ndarray,
    labels: np.ndarray,
    feature_names: Sequence[str],
    *,
    standardised: np.ndarray | None = None,
) -> list[SegmentProfile]:
    """Describe every segment by the deviation of its mean from the population mean.

    The effect is measured on raw values (so "3x more purchases" reads naturally); the
    z statistic uses the standard error of a mean of ``n`` rows drawn without
    replacement from the population, so tiny segments need bigger effects to count.
    """
    x = np.asarray(features, dtype=float)
    labels = np.asarray(labels)
    n = x.shape[0]
    pop_mean = x.mean(axis=0)
    pop_std = x.std(axis=0, ddof=1) if n > 1 else np.zeros(x.shape[1])
    safe_std = np.where(pop_std > 0, pop_std, np.inf)
    z_space = standardised if standardised is not None else x
    profiles = []
    for label in np.unique(labels):
        mask = labels == label
        size = int(mask.sum())
        seg_mean = x[mask].mean(axis=0)
        members = z_space[mask]
        centre = members.mean(axis=0)
        spread = float(np.sqrt(((members - centre) ** 2).sum(axis=1).mean()))
        effect = (seg_mean - pop_mean) / safe_std
        fpc = np.sqrt(max(n - size, 0) / (n - 1)) if n > 1 else 0.0
        se_factor = fpc / np.sqrt(size)
        z = np.divide(effect, se_factor, out=np.zeros_like(effect), where=se_factor > 0)
        deviations = sorted(
            (
                FeatureDeviation(
                    feature=name,
                    segment_mean=float(seg_mean[j]),
                    population_mean=float(pop_mean[j]),
                    effect=float(effect[j]),
                    z=float(z[j]),
                )
                for j, name in enumerate(feature_names)
            ),
            key=lambda d: -abs(d.effect),
        )
        profiles.append(
            SegmentProfile(
                label=int(label),
                size=size,
                share=size / n,
                deviations=tuple(deviations),
                centroid=tuple(float(v) for v in centre),
                spread=spread,
            )
        )
    return profiles


# Two segments of consecutive versions are the same group only when their centroids are
# less than this many pooled spreads apart (centroid distance / RMS member-to-centroid
# distance): the new centre then lies well inside the old group's own cloud of users.
MAX_SEPARATION = 1.0


def segment_separation(
    previous_centroids: np.ndarray,
    current_centroids: np.ndarray,
    previous_spread: Sequence[float] | np.ndarray,
    current_spread: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """(current x previous) centroid distances in units of the two segments' pooled spread.

    Why relative to the spread: a raw distance means nothing without a yardstick; the same
    drift is large for a tight group and small for a diffuse one, and any rescaling of the
    features scales distances and spreads alike, so the ratio does not depend on the
    features' units. The pooled spread is sqrt((s_prev^2 + s_cur^2) / 2). A segment whose
    spread is unknown (NaN: stored before spreads were) borrows its counterpart's.
    """
    prev = np.atleast_2d(np.asarray(previous_centroids, dtype=float))
    cur = np.atleast_2d(np.asarray(current_centroids, dtype=float))
    s_prev = np.asarray(previous_spread, dtype=float).reshape(-1)
    s_cur = np.asarray(current_spread, dtype=float).reshape(-1)
    if len(s_prev) != prev.shape[0] or len(s_cur) != cur.shape[0]:
        raise ValueError("one spread per centroid is required")
    sp = np.broadcast_to(s_prev[None, :], (cur.shape[0], prev.shape[0]))
    sc = np.broadcast_to(s_cur[:, None], (cur.shape[0], prev.shape[0]))
    sp, sc = np.where(np.isfinite(sp), sp, sc), np.where(np.isfinite(sc), sc, sp)
    pooled = np.sqrt((sp**2 + sc**2) / 2)
    distance = np.linalg.norm(cur[:, None, :] - prev[None, :, :], axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pooled > 0, distance / pooled, np.where(distance > 0, np.inf, 0.0))
    return np.where(np.isnan(ratio), np.inf, ratio)


def restandardise(
    centroids: np.ndarray,
    spreads: Sequence[float] | np.ndarray,
    *,
    from_mean: np.ndarray,
    from_scale: np.ndarray,
    to_mean: np.ndarray,
    to_scale: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Move a version's centroids and spreads into another version's standardised space.

    Each version standardises with its own scaler, fitted on its own window; comparing
    centroids across scalers mistakes a change of population mix for movement of every
    segment (on synthetic data, replacing one kind by another moved the unchanged kinds
    by 0.5-0.7 spreads without this, 0.05-0.07 with it). The centroid is un-standardised
    with the old scaler and standardised with the new one; a spread (a norm over all
    dimensions) is rescaled by the root-mean-square ratio of the two scales.
    """
    c = np.atleast_2d(np.asarray(centroids, dtype=float))
    f_mean, f_scale = np.asarray(from_mean, float), np.asarray(from_scale, float)
    t_mean, t_scale = np.asarray(to_mean, float), np.asarray(to_scale, float)
    if not (c.shape[1] == len(f_mean) == len(f_scale) == len(t_mean) == len(t_scale)):
        raise ValueError("centroids and both scalers must have the same dimensions")
    safe_to = np.where(t_scale > 0, t_scale, 1.0)
    moved = (c * f_scale + f_mean - t_mean) / safe_to
    factor = float(np.sqrt(np.mean((f_scale / safe_to) ** 2)))
    return moved, np.asarray(spreads, dtype=float).reshape(-1) * factor


def match_segments(
    previous_centroids: np.ndarray,
    current_centroids: np.ndarray,
    *,
    previous_spread: Sequence[float] | np.ndarray | None = None,
    current_spread: Sequence[float] | np.ndarray | None = None,
    max_separation: float = MAX_SEPARATION,
) -> dict[int, int]:
    """Map each current segment to the previous segment it continues, if one is close enough.

    Cluster labels are arbitrary between fits; without matching, "segment 2 grew" would
    compare unrelated groups. The Hungarian assignment alone always pairs segments, so a
    group that vanished and an unrelated one that appeared the same night shared a line
    (and the newcomer inherited the old one's insights, dismissals included). A pair is
    therefore kept only when its ``segment_separation`` is at most ``max_separation``;
    pairs over the limit are priced out of the assignment (not just dropped after it), so
    a far pair never takes a close partner from another segment. Returns {current index:
    previous index}; an unmatched current segment starts a new line, an unmatched previous
    one ends. Without spreads (both None) the limit is not applied (old behaviour).

    Why centroids and not the overlap of users (Jaccard of memberships): versions are
    trained on sliding windows, so a stable behaviour group keeps its centre while its
    members churn (newcomers join, lapsed users leave) and a low user overlap would cut
    its line; members are also not stored per segment. Assigning the same users with both
    models is no cure either: the old model must put every user somewhere, so a distant
    new group is filed under whichever old segment is nearest, however far, and looks
    like a continuation. The standardised space is the one the model clusters in, so
    distances there are what made the segments in the first place.
    """
    prev = np.atleast_2d(np.asarray(previous_centroids, dtype=float))
    cur = np.atleast_2d(np.asarray(current_centroids, dtype=float))
    if prev.size == 0 or cur.size == 0:
        return {}
    if previous_spread is None and current_spread is None:
        cost = np.linalg.norm(cur[:, None, :] - prev[None, :, :], axis=2)
        allowed = np.ones_like(cost, dtype=bool)
    else:
        nan_prev = np.full(prev.shape[0], np.nan)
        nan_cur = np.full(cur.shape[0], np.nan)
        cost = segment_separation(
            prev,
            cur,
            nan_prev if previous_spread is None else previous_spread,
            nan_cur if current_spread is None else current_spread,
        )
        allowed = cost <= max_separation
    if not allowed.any():
        return {}
    finite = cost[allowed]
    # Far pairs cost more than every allowed assignment together, so the assignment uses
    # them only when nothing else is left, and they are then dropped.
    priced = np.where(allowed, cost, float(finite.sum()) + 1.0 + finite.max() * cost.size)
    rows, cols = linear_sum_assignment(priced)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if allowed[r, c]}


@dataclass(frozen=True)
class SizeTrend:
    """Linear trend of a segment's share of users over time."""

    slope_per_day: float  # change of share (0..1) per day
    p_value: float
    direction: str  # "growing", "shrinking" or "stable"
    points: int


def segment_trend(
    days: Sequence[float], shares: Sequence[float], *, alpha: float = 0.05, overlap: int = 1
) -> SizeTrend:
    """Fit share = a + b * day; call it growing/shrinking only when b is significant.

    A segment drifting by noise from one run to the next should not produce an insight;
    the regression's p-value is what separates drift from a trend. When each point is
    measured on a window shared with its ``overlap - 1`` neighbours (trailing 7-day
    windows stepped by a day: overlap 7), neighbouring points are not independent and
    the ordinary standard error is too small by about sqrt(overlap); the test then uses
    the inflated error and the effective number of points n / overlap.
    """
    t = np.asarray(days, dtype=float)
    s = np.asarray(shares, dtype=float)
    if len(t) != len(s):
        raise ValueError("days and shares must have the same length")
    if overlap < 1:
        raise ValueError("overlap must be at least 1")
    n_eff = len(t) / overlap
    if len(t) < 3 or np.ptp(t) == 0 or np.ptp(s) == 0:
        return SizeTrend(0.0, 1.0, "stable", len(t))
    fit = stats.linregress(t, s)
    if n_eff < 3 or fit.stderr == 0:
        p = 1.0 if n_eff < 3 else 0.0
    else:
        t_stat = fit.slope / (fit.stderr * np.sqrt(overlap))
        p = float(2 * stats.t.sf(abs(t_stat), df=n_eff - 2))
    direction = "stable"
    if p < alpha:
        direction = "growing" if fit.slope > 0 else "shrinking"
    return SizeTrend(float(fit.slope), p, direction, len(t))


def segment_shares(model: Pipeline, features: np.ndarray, k: int) -> np.ndarray:
    """Share of users in each of the model's k segments for one period's features."""
    x = np.asarray(features, dtype=float)
    if x.shape[0] == 0:
        return np.zeros(k)
    labels = model.predict(x)
    return np.bincount(labels, minlength=k)[:k] / x.shape[0]


# What to do for a segment that stands out on a feature, keyed by (feature, direction).
DEFAULT_PLAYBOOK: Mapping[tuple[str, str], str] = {
    (
        "shortcuts",
        "high",
    ): "Surface advanced tools and keyboard shortcuts; offer a power-user plan.",
    ("feature_breadth", "high"): "Announce new features to them first; invite them to betas.",
    ("page_views", "high"): "Guide exploration with recommendations of unused features.",
    ("goals", "high"): "Show progress, streaks and milestones; celebrate completed goals.",
    ("streak_days", "high"): "Reward streaks; remind before a streak breaks.",
    ("tasks", "high"): "Offer bulk actions and templates to make frequent tasks faster.",
    ("social", "high"): "Promote sharing, comments and team invites; show social proof.",
    ("invites", "high"): "Run a referral programme; they already bring others in.",
    ("purchases", "high"): "Retain with loyalty benefits; avoid discounting a paying group.",
    ("purchases", "low"): "Test an upgrade offer or trial of paid features.",
    ("sessions", "low"): "Re-engage with a reminder and a short tour of core value.",
    ("active_days", "low"): "Re-engage before they churn: email digest of what they missed.",
}


def recommend_targeting(
    profile: SegmentProfile,
    playbook: Mapping[tuple[str, str], str] = DEFAULT_PLAYBOOK,
    *,
    limit: int = 3,
) -> list[str]:
    """Targeting actions for a segment, from its distinguishing features, strongest first.

    Only features that really set the segment apart are used, so a typical segment
    gets no targeted action rather than a generic one.
    """
    actions: list[str] = []
    for dev in profile.distinguishing:
        action = playbook.get((dev.feature, dev.direction))
        if action and action not in actions:
            actions.append(action)
        if len(actions) >= limit:
            break
    return actions


def agreement_with_truth(labels: np.ndarray, truth: Sequence[str]) -> dict[str, float]:
    """Adjusted Rand index and NMI between segments and known user kinds (evaluation)."""
    return {
        "adjusted_rand": float(adjusted_rand_score(truth, labels)),
        "nmi": float(normalized_mutual_info_score(truth, labels)),
    }

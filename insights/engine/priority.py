"""Insight priority = impact x confidence x novelty, each part computed and explained.

Why a product and not a sum: an insight that is certain but trivial, or big but
probably noise, or important but already known for weeks, should all sink. A product
sends any of them towards zero; a sum would let one strong part carry the others.

Each part is in [0, 1]:
- impact: how big the effect is, through a saturating curve 1 - exp(-x / scale), so
  doubling an already large effect barely changes the priority.
- confidence: how sure we are it is real, from a p-value, a model's held-out score or
  a sample size, whichever the source has.
- novelty: 1 for a finding never seen; decays with a half-life while the same finding
  (same dedup key) keeps being reported unchanged, and comes back when its key figure
  moves. Most key figures move by their relative change; a forecast threshold crossing's
  key figure is its date, and only a move *earlier* by a share of the forecast's horizon
  counts (:func:`crossing_moved`).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    value: float
    why: str


@dataclass(frozen=True)
class Priority:
    impact: Part
    confidence: Part
    novelty: Part

    @property
    def score(self) -> float:
        return self.impact.value * self.confidence.value * self.novelty.value

    @property
    def explanation(self) -> str:
        return (
            f"impact {self.impact.value:.2f} ({self.impact.why}) × "
            f"confidence {self.confidence.value:.2f} ({self.confidence.why}) × "
            f"novelty {self.novelty.value:.2f} ({self.novelty.why}) = {self.score:.3f}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "score": self.score,
            "impact": self.impact.value,
            "impact_why": self.impact.why,
            "confidence": self.confidence.value,
            "confidence_why": self.confidence.why,
            "novelty": self.novelty.value,
            "novelty_why": self.novelty.why,
            "explanation": self.explanation,
        }


def _clip01(x: float) -> float:
    if not math.isfinite(x):
        return 0.0
    return min(max(x, 0.0), 1.0)


def impact_from_effect(effect: float, *, scale: float, what: str) -> Part:
    """Saturating impact of an effect size; ``scale`` is the effect that gives 0.63."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    magnitude = abs(effect) if math.isfinite(effect) else 0.0
    return Part(_clip01(1 - math.exp(-magnitude / scale)), f"{what} {effect:+.3g}")


def impact_from_odds_ratio(odds_ratio: float, *, scale: float = 1.0) -> Part:
    """Odds ratios are multiplicative: 2.0 and 0.5 are equally strong, so use |log OR|."""
    if odds_ratio <= 0 or not math.isfinite(odds_ratio):
        return Part(0.0, "odds ratio undefined")
    magnitude = abs(math.log(odds_ratio))
    return Part(_clip01(1 - math.exp(-magnitude / scale)), f"odds ratio {odds_ratio:.2f}")


def confidence_from_p_value(p_value: float) -> Part:
    """1 - p: a finding at p = 0.01 is trusted more than one at p = 0.2."""
    if not math.isfinite(p_value):
        return Part(0.0, "p-value undefined")
    return Part(_clip01(1 - p_value), f"p={p_value:.3g}")


def confidence_from_auc(auc: float) -> Part:
    """A model at AUC 0.5 knows nothing (0); at 1.0 it is perfectly reliable (1)."""
    if not math.isfinite(auc):
        return Part(0.0, "AUC unmeasured")
    return Part(_clip01(2 * (auc - 0.5)), f"held-out AUC {auc:.2f}")


def confidence_from_silhouette(silhouette: float | None) -> Part:
    """Segments are as trustworthy as they are separated: silhouette <= 0 means none."""
    if silhouette is None or not math.isfinite(silhouette):
        return Part(0.0, "silhouette unmeasured")
    return Part(_clip01(silhouette), f"held-out silhouette {silhouette:.2f}")


def confidence_from_count(n: float, *, half_at: float) -> Part:
    """More observations, more trust: n / (n + half_at) reaches 0.5 at ``half_at``."""
    if half_at <= 0:
        raise ValueError("half_at must be positive")
    n = max(float(n), 0.0)
    return Part(_clip01(n / (n + half_at)), f"{n:.0f} observations")


def combine_confidence(*parts: Part) -> Part:
    """Independent reasons for doubt multiply: confidence is the product of the parts."""
    if not parts:
        raise ValueError("at least one part is needed")
    value = 1.0
    for p in parts:
        value *= p.value
    return Part(_clip01(value), ", ".join(p.why for p in parts))


# A forecast crossing that moved earlier by this share of the forecast's horizon moved
# materially (a quarter: 7.5 days on a 30-day horizon, about 3 months on a year's).
CROSSING_MATERIAL_SHARE = 0.25
DAY_S = 86400.0


def crossing_material_seconds(
    horizon_days: float, *, share: float = CROSSING_MATERIAL_SHARE
) -> float:
    """How much earlier a forecast threshold crossing must come to be news again, in seconds.

    Relative to the horizon because that is the precision the forecast is made at: a week
    matters on a 30-day forecast and is noise on a year's. At least a day.
    """
    if share <= 0:
        raise ValueError("share must be positive")
    return max(share * float(horizon_days), 1.0) * DAY_S


def crossing_moved(*, reference_at: float, current_at: float, material_seconds: float) -> float:
    """How far a crossing moved *earlier* on a scale where 1 is material (0 if it did not).

    Both dates are epoch seconds. The date of the crossing is what an operator dismisses
    ("users cross 10k around 3 March"): it does not change as time passes, unlike the days
    left until it, which halve on their own and used to reopen the insight each time. A
    crossing moving later is good news for a threshold one is warned about, so it never
    counts.
    """
    if material_seconds <= 0:
        raise ValueError("material_seconds must be positive")
    if not (math.isfinite(reference_at) and math.isfinite(current_at)):
        return 0.0
    return max(reference_at - current_at, 0.0) / material_seconds


def novelty(
    *,
    previous_value: float | None,
    current_value: float,
    days_since_first_seen: float,
    half_life_days: float = 7.0,
    change_scale: float = 0.5,
    moved: float | None = None,
) -> Part:
    """Novelty of a finding given what the same dedup key reported before.

    Never seen: 1. Seen before: the larger of (a) repetition decay 0.5 ** (days /
    half-life), and (b) how much the key figure moved, relative change / change_scale,
    capped at 1, so a known finding that got much worse rises again. A finding whose key
    figure does not move by its relative change (a crossing date) passes ``moved``, already
    on that scale (1 = material).
    """
    if previous_value is None:
        return Part(1.0, "first seen")
    if half_life_days <= 0 or change_scale <= 0:
        raise ValueError("half_life_days and change_scale must be positive")
    decay = 0.5 ** (max(days_since_first_seen, 0.0) / half_life_days)
    if moved is None:
        denom = max(abs(previous_value), 1e-9)
        change = abs(current_value - previous_value) / denom
        moved_part = _clip01(change / change_scale)
        what = f"key figure moved {change:.0%}"
    else:
        moved_part = _clip01(moved)
        what = f"moved {moved:.0%} of a material change"
    value = max(decay, moved_part)
    why = f"known for {days_since_first_seen:.1f} days, {what}"
    return Part(_clip01(value), why)


def priority(*, impact: Part, confidence: Part, novelty: Part) -> Priority:
    """Bundle the three parts; the score and its explanation are derived from them."""
    return Priority(impact=impact, confidence=confidence, novelty=novelty)


_SLUG = re.compile(r"[^a-z0-9]+")


def dedup_key(category: str, source: str, *subject: object) -> str:
    """Stable key for "the same finding": category, source system and its subject.

    Readable prefix for operators and a short hash of the full subject so that keys of
    any length fit a database column; the same subject always gives the same key.
    """
    if not category or not source:
        raise ValueError("category and source are required")
    norm = "|".join(_SLUG.sub("-", str(s).strip().lower()).strip("-") for s in subject)
    digest = hashlib.sha256(f"{category}|{source}|{norm}".encode()).hexdigest()[:16]
    readable = _SLUG.sub("-", f"{category}-{source}-{norm}".lower()).strip("-")[:80]
    return f"{readable}:{digest}"

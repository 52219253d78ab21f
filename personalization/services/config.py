"""Real-time resolution of a user's UI configuration, cached and invalidated by version.

Why a version number rather than deleting keys: a rule change affects every
user, and enumerating cached users is neither cheap nor reliable across cache
backends. Every cached entry carries the version in its key; bumping the version
(``config_invalidate``, called after any rule, experiment or persona write)
makes every old entry unreachable at once, and they expire on their own.

Two layers:

- the shared cache (Redis in production): one entry per user and version;
- a small in-process layer in front of it. Its copy of the version is trusted
  for ``PERSONALIZATION_LOCAL_CACHE_SECONDS`` (default 1 s), so a warm
  resolution costs no network round trip at all. A write in *this* process is
  seen at once; a write in another process within that second. Set the setting
  to 0 to always ask the shared cache (the tests do, for isolation).

A resolution without a cache hit reads the profile and the live rules + running
and shipped experiments (themselves cached under the same version); when an
experiment is running or shipped it also reads, in one query, whether it still runs
(or is still shipped, which variant and to what percentage of its audience) and which variant the user was already shown
(that one is served again whatever the targeting says now: sticky bucketing), and
writes new exposures (``INSERT ... ON CONFLICT DO NOTHING``) for running ones only.

Request attributes (``engine.attributes``) take part in matching, so they are part of
the cache key (a stable digest; the empty set keeps the key of a request without any):
one user's answer for ``country=FR`` is never served for ``country=DE``. One more case
is not cached at all: a running experiment whose targeting tests request attributes
rejected a user it never exposed. Under other attributes that user may be exposed, and
from then on sticky bucketing serves them the variant whatever they send; an answer
cached under the first attributes would keep hiding it (exposures bump no version).
Answers for everyone else, and every answer once the user is exposed, are cached.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from ..engine.assignment import assign_variant
from ..engine.attributes import Scalar, attributes_digest
from ..engine.rollout import FULL_ROLLOUT, in_rollout
from ..engine.rules import (
    RuleSpec,
    UserContext,
    matches_or_skip,
    resolve_config,
    rule_is_live,
    uses_request,
)
from ..models import Experiment, Exposure, PersonalizationRule, UserProfile

VERSION_KEY = "personalization:config-version"
CONFIG_TTL_SECONDS = 300


@dataclass(frozen=True)
class ExperimentSpec:
    key: str
    variants: tuple[str, ...]
    weights: tuple[float, ...]
    coverage: float
    targeting: dict
    starts_at: datetime | None
    ends_at: datetime | None
    pk: int
    # The shipped variant of a stopped experiment ("" while it runs): served to the
    # users the targeting matches who are inside ``rollout`` % (``engine.rollout``),
    # with no assignment and no exposure.
    shipped: str = ""
    rollout: float = FULL_ROLLOUT


LOCAL_MAX_ENTRIES = 50_000


class _LocalLayer:
    """Per-process copy of the version and of recent configurations (see module doc)."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.checked_at = 0.0
        self.configs: dict[str, tuple[float, dict]] = {}

    @staticmethod
    def trust_seconds() -> float:
        return float(getattr(settings, "PERSONALIZATION_LOCAL_CACHE_SECONDS", 1.0))

    def forget(self) -> None:
        self.version, self.checked_at = None, 0.0
        self.configs.clear()

    def get(self, key: str, version: int) -> dict | None:
        if self.trust_seconds() <= 0 or version != self.version:
            return None
        hit = self.configs.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: str, version: int, payload: dict, ttl: float) -> None:
        if self.trust_seconds() <= 0 or version != self.version:
            return
        if len(self.configs) >= LOCAL_MAX_ENTRIES:
            self.configs.clear()
        self.configs[key] = (time.monotonic() + ttl, payload)


_local = _LocalLayer()


def config_version() -> int:
    trust = _local.trust_seconds()
    if trust > 0 and _local.version is not None and time.monotonic() - _local.checked_at < trust:
        return _local.version
    version = cache.get(VERSION_KEY)
    if version is None:
        cache.add(VERSION_KEY, _fresh_version(), timeout=None)
        version = cache.get(VERSION_KEY) or _fresh_version()
    version = int(version)
    if version != _local.version:
        _local.configs.clear()
    _local.version, _local.checked_at = version, time.monotonic()
    return version


def _fresh_version() -> int:
    """A starting version no earlier run can have reached: the clock in microseconds.

    Starting again at 1 after the version key was evicted or flushed would make
    entries cached under 1, 2, 3... by the previous run reachable again while
    they are still alive; versions grow by one per write, far slower than the clock.
    """
    return time.time_ns() // 1000


def _bump_version() -> None:
    try:
        cache.incr(VERSION_KEY)
    except ValueError:  # not set (evicted or flushed): start from a fresh, larger value
        cache.set(VERSION_KEY, _fresh_version(), timeout=None)
    _local.forget()


def config_invalidate() -> None:
    """Make every cached configuration stale: now, and again when the transaction commits.

    The first bump lets reads inside the writing transaction see the change; the
    second discards anything a concurrent reader cached from the not-yet-committed
    state in between.
    """
    _bump_version()
    transaction.on_commit(_bump_version)


# Experiments whose variants configurations use: running ones, and stopped ones shipped.
_SERVED = Q(status=Experiment.Status.RUNNING) | (
    Q(status=Experiment.Status.STOPPED) & ~Q(shipped_variant="")
)


def _served_ship(status: str, shipped_variant: str, rollout_percent: float) -> tuple[str, float]:
    """(shipped variant, rollout percentage) as served: nothing shipped while running."""
    if status == Experiment.Status.STOPPED and shipped_variant:
        return shipped_variant, rollout_percent
    return "", FULL_ROLLOUT


def _live_specs(version: int) -> tuple[list[RuleSpec], list[ExperimentSpec]]:
    # v3: experiment specs carry ``rollout`` (v2: ``shipped``); a spec pickled by an older
    # process would otherwise be read without them.
    key = f"personalization:specs:v3:{version}"
    specs = cache.get(key)
    if specs is None:
        rules = [
            RuleSpec(
                r.key,
                r.priority,
                r.conditions or {},
                r.action or {},
                r.enabled,
                r.starts_at,
                r.ends_at,
            )
            for r in PersonalizationRule.objects.filter(enabled=True)
        ]
        experiments = [
            ExperimentSpec(
                e.key,
                tuple(e.variant_names),
                tuple(e.weights),
                e.coverage,
                e.targeting or {},
                e.starts_at,
                e.ends_at,
                e.pk,
                *_served_ship(e.status, e.shipped_variant, e.rollout_percent),
            )
            # Oldest first: targeting on another experiment's variant sees the variants
            # of the experiments created before this one (assigned earlier in the loop),
            # shipped ones included.
            for e in Experiment.objects.filter(_SERVED).order_by("pk")
        ]
        specs = (rules, experiments)
        cache.set(key, specs, timeout=CONFIG_TTL_SECONDS)
    return specs


def _ttl(rules: list[RuleSpec], experiments: list[ExperimentSpec], now: datetime) -> int:
    """Never cache past the next moment a rule or experiment starts or ends."""
    boundaries = [
        t
        for item in [*rules, *experiments]
        for t in (item.starts_at, item.ends_at)
        if t is not None and t > now
    ]
    if not boundaries:
        return CONFIG_TTL_SECONDS
    return max(1, min(CONFIG_TTL_SECONDS, int((min(boundaries) - now).total_seconds())))


def _user_key(user_id: str) -> str:
    """The user's part of a cache key: a digest, since ids may hold spaces or control
    characters that cache backends refuse or warn about (Django's key checks)."""
    return hashlib.blake2b(user_id.encode(), digest_size=16).hexdigest()


def config_resolve(
    *,
    user_id: str,
    attributes: Mapping[str, Scalar] | None = None,
    now: datetime | None = None,
    use_cache: bool = True,
) -> dict:
    """The merged UI configuration of ``user_id``, with what produced it.

    ``attributes``: sent with this request (already validated, ``engine.attributes``);
    conditions test them under ``request``. They decide eligibility only: the bucket
    is the hash of the experiment key and the user id, and an exposed user keeps the
    variant recorded, whatever they send.
    """
    now = now or timezone.now()
    attributes = dict(attributes or {})
    version = config_version()
    digest = attributes_digest(attributes)
    key = f"personalization:config:{version}:{_user_key(user_id)}"
    if digest:
        key = f"{key}:a:{digest}"
    if use_cache:
        cached = _local.get(key, version)
        if cached is None:
            entry = cache.get(key)  # (valid until, epoch seconds; payload)
            if entry is not None:
                cached = entry[1]
                _local.put(key, version, cached, entry[0] - time.time())
        if cached is not None:
            return {**cached, "cached": True}
    rules, experiments = _live_specs(version)
    profile = (
        UserProfile.objects.filter(user_id=user_id)
        .values("persona", "persona_confidence", "segments", "attributes")
        .first()
    ) or {}
    context = UserContext(
        user_id=user_id,
        persona=profile.get("persona") or None,
        persona_confidence=profile.get("persona_confidence"),
        segments=frozenset(profile.get("segments") or ()),
        attributes=profile.get("attributes") or {},
        request=attributes,
    )
    variants: dict[str, str] = {}
    shipped: list[str] = []
    # A shipped experiment has ended; its variant is served with no time window.
    in_window = [
        exp
        for exp in experiments
        if exp.shipped
        or not ((exp.starts_at and now < exp.starts_at) or (exp.ends_at and now >= exp.ends_at))
    ]
    sticky: dict[int, str] = {}
    stale = False
    # A request-targeted experiment left this (never exposed) user out: see module doc.
    request_rejected = False
    if in_window:
        # One indexed read, for two reasons. The specs may be up to the local trust
        # window old: an experiment stopped or deleted meanwhile must not be served, and
        # its exposure would break the (deferred) foreign key at commit. And a user
        # already exposed keeps the variant they were shown (sticky bucketing): the
        # nightly job may move them out of the targeting (a new persona, dormant), and
        # the analysis keeps counting them in their arm, so serving them nothing (the
        # control's UI) would both flip their UI and dilute the comparison.
        # The same read says whether each is still shipped, and which variant: a ship or
        # an un-ship is then served at once by every process, not after its trust window.
        rows = (
            Experiment.objects.filter(pk__in=[exp.pk for exp in in_window])
            .filter(_SERVED)
            .annotate(
                served=Subquery(
                    Exposure.objects.filter(experiment=OuterRef("pk"), user_id=user_id).values(
                        "variant"
                    )[:1]
                )
            )
            .values_list("pk", "status", "shipped_variant", "rollout_percent", "served")
        )
        # The rollout percentage is read here too: a ramp from 10 % to 50 % is served at
        # once by every process, like a ship, not after its trust window.
        alive: dict[int, tuple[str, float]] = {}
        for pk, status, shipped_variant, rollout_percent, served in rows:
            alive[pk] = _served_ship(status, shipped_variant, rollout_percent)
            if served is not None:
                sticky[pk] = served
        if any(alive.get(exp.pk) != (exp.shipped, exp.rollout) for exp in in_window):
            stale = True
            _local.forget()
            in_window = [
                replace(exp, shipped=alive[exp.pk][0], rollout=alive[exp.pk][1])
                for exp in in_window
                if exp.pk in alive
            ]
    new_exposures = []
    for exp in in_window:
        if exp.shipped:
            # Shipped: the targeted audience (evaluated now, as for users never exposed)
            # gets the variant, coverage and weights aside; nothing is recorded. Of that
            # audience, only the users inside the rollout percentage: the others get what
            # an un-ship would give them (the rules without the variant: the default UI),
            # whatever arm they had during the run.
            targeted = replace(context, variants=dict(variants))
            if (
                exp.shipped in exp.variants
                and matches_or_skip(exp.targeting, targeted, source=f"experiment {exp.key}")
                and in_rollout(experiment_key=exp.key, user_id=user_id, percent=exp.rollout)
            ):
                variants[exp.key] = exp.shipped
                shipped.append(exp.key)
            continue
        served = sticky.get(exp.pk)
        if served in exp.variants:
            variants[exp.key] = served
            continue
        targeted = replace(context, variants=dict(variants))
        if not matches_or_skip(exp.targeting, targeted, source=f"experiment {exp.key}"):
            request_rejected = request_rejected or uses_request(exp.targeting)
            continue
        variant = assign_variant(
            experiment_key=exp.key,
            user_id=user_id,
            variants=exp.variants,
            weights=exp.weights,
            coverage=exp.coverage,
        )
        if variant is not None:
            variants[exp.key] = variant
            new_exposures.append(
                Exposure(experiment_id=exp.pk, user_id=user_id, variant=variant, exposed_at=now)
            )
    if new_exposures:
        Exposure.objects.bulk_create(new_exposures, ignore_conflicts=True)
    context = UserContext(**{**context.__dict__, "variants": variants})
    live = [r for r in rules if rule_is_live(r, now)]
    resolved = resolve_config(live, context, now=now)
    payload = {
        "user_id": user_id,
        "persona": context.persona,
        "persona_confidence": context.persona_confidence,
        "config": resolved.config,
        "provenance": resolved.provenance,
        "rules": resolved.matched_rules,
        "experiments": variants,
        "shipped": shipped,
        "attributes": attributes,
        "resolved_at": now,
        "cache_version": version,
    }
    if use_cache and not stale and not request_rejected:
        ttl = _ttl(rules, experiments, now)
        cache.set(key, (time.time() + ttl, payload), timeout=ttl)
        _local.put(key, version, payload, ttl)
    return {**payload, "cached": False}

"""Writing the demo world (``telemetry.demo_world``) into the database, reproducibly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.db import transaction

from .bulk import insert_events, insert_samples
from .demo_world import build_metrics, build_world
from .models import ChangeEvent, DemoIncident, DemoUser, Sample, Series, labels_key
from .services import series_ensure

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class DemoConfig:
    days: int = 60
    users: int = 2000
    seed: int = 0
    step_minutes: int = 5
    end: float | None = None  # epoch seconds; default: now, floored to the step

    def validate(self) -> None:
        if not 2 <= self.days <= 730:
            raise ValueError("days must be between 2 and 730")
        if not 0 <= self.users <= 200_000:
            raise ValueError("users must be between 0 and 200000")
        if self.step_minutes not in (1, 5, 10, 15, 30, 60):
            raise ValueError("step-minutes must be one of 1, 5, 10, 15, 30, 60")


@dataclass
class DemoResult:
    series: int
    samples: int
    events: int
    users: int
    incidents: int
    seconds: float


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), tz=UTC)


def seed_demo(config: DemoConfig, progress: Progress | None = None) -> DemoResult:
    """Write a demo world. Running it again with the same config changes nothing."""
    config.validate()
    started = time.perf_counter()
    step = config.step_minutes * 60
    end = config.end if config.end is not None else float(np.floor(time.time() / step) * step)
    world = build_world(
        end=end, days=config.days, users=config.users, seed=config.seed, step_seconds=step
    )
    report = progress or (lambda label, n: None)
    with transaction.atomic():
        ids: dict[tuple[str, str], Series] = {}
        n_samples = 0
        for s in world.series:
            series = series_ensure(
                name=s.name,
                labels=s.labels,
                unit=s.unit,
                description=s.description,
                importance=s.importance,
            )
            ids[(s.name, series.labels_key)] = series
            insert_samples(np.full(world.ts.size, series.pk), world.ts, s.values)
            n_samples += world.ts.size
            report("samples", world.ts.size)
        for inc in world.incidents:
            cause = ids[(inc.cause[0], labels_key(inc.cause[1]))]
            obj, _ = DemoIncident.objects.update_or_create(
                name=inc.name,
                start=_dt(inc.start),
                defaults={
                    "kind": inc.kind,
                    "cause_series": cause,
                    "end": _dt(inc.end),
                    "description": inc.description,
                },
            )
            obj.effect_series.set([ids[(n, labels_key(lb))] for n, lb in inc.effects])
            if inc.change is not None:
                kind, title, labels, before = inc.change
                ChangeEvent.objects.update_or_create(
                    source="demo",
                    title=title,
                    at=_dt(inc.start - before),
                    defaults={"kind": kind, "labels": labels, "created_by": "seed_demo"},
                )
        ev = world.events
        batch = 20_000
        for i in range(0, len(ev.ts), batch):
            insert_events(
                [
                    (u, n, _dt(t), sid, p, f"demo-{config.seed}-{i + j}")
                    for j, (u, n, t, sid, p) in enumerate(
                        zip(
                            ev.user_id[i : i + batch],
                            ev.name[i : i + batch],
                            ev.ts[i : i + batch],
                            ev.session_id[i : i + batch],
                            ev.properties[i : i + batch],
                            strict=True,
                        )
                    )
                ]
            )
            report("events", min(batch, len(ev.ts) - i))
        DemoUser.objects.bulk_create(
            [DemoUser(user_id=u, kind=k) for u, k in world.user_kinds.items()],
            batch_size=10_000,
            ignore_conflicts=True,
        )
    return DemoResult(
        series=len(world.series),
        samples=n_samples,
        events=len(ev.ts),
        users=len(world.user_kinds),
        incidents=len(world.incidents),
        seconds=time.perf_counter() - started,
    )


def demo_ensure(*, days: int, users: int, seed: int) -> bool:
    """Seed a demo world unless one is there; True when it seeded."""
    if DemoIncident.objects.exists():
        return False
    seed_demo(DemoConfig(days=days, users=users, seed=seed))
    return True


def demo_totals(config: DemoConfig) -> tuple[int, int]:
    """Rough totals for a progress bar before the world is built."""
    n = config.days * 24 * 60 // config.step_minutes
    return n * 40, int(config.users * config.days * 1.75)  # measured: about 1.75 events a user-day


MAX_GAP_SECONDS = 86400.0


def demo_extend(*, now: float | None = None, step_minutes: int = 5) -> int:
    """Continue the demo world's metrics up to now, so the live stack has fresh data.

    Does nothing unless a demo world was seeded (real telemetry is never touched).
    Returns the number of samples written.
    """
    anchor = series_get_demo_anchor()
    if anchor is None:
        return 0
    origin, last = anchor
    step = step_minutes * 60
    now = time.time() if now is None else now
    # After a long pause the feed resumes with the last day rather than years of backfill.
    start = max(last + step, np.floor((now - MAX_GAP_SECONDS) / step) * step)
    grid = np.arange(start, np.floor(now / step) * step + 1, step, dtype=np.float64)
    if grid.size == 0:
        return 0
    rng = np.random.default_rng(int(grid[0]))
    metrics, _ = build_metrics(grid, rng, float(step), origin=origin, with_incidents=False)
    written = 0
    with transaction.atomic():
        for s in metrics:
            series = Series.objects.filter(name=s.name, labels_key=labels_key(s.labels)).first()
            if series is not None:
                written += insert_samples(np.full(grid.size, series.pk), grid, s.values)
    return written


def series_get_demo_anchor() -> tuple[float, float] | None:
    """(first, last) sample time of the demo's total request rate, if a demo world exists."""
    if not DemoIncident.objects.exists():
        return None
    series = Series.objects.filter(name="http.requests.rate", labels_key="").first()
    if series is None:
        return None
    samples = Sample.objects.filter(series=series)
    first = samples.order_by("ts").values_list("ts", flat=True).first()
    last = samples.order_by("-ts").values_list("ts", flat=True).first()
    return (first.timestamp(), last.timestamp()) if first and last else None

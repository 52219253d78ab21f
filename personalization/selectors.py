"""Reads of the personalization app for the API, the admin, other apps and the overview."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone

from .models import (
    Experiment,
    ExperimentResult,
    PersonalizationRule,
    PersonaModelRun,
    UserProfile,
)


def persona_distribution() -> dict[str, int]:
    """Users per persona now; users without a persona are counted under ``none``."""
    rows = UserProfile.objects.values_list("persona").annotate(n=Count("id")).order_by()
    return {(persona or "none"): n for persona, n in rows}


def rules_active(*, now=None) -> QuerySet[PersonalizationRule]:
    """Enabled rules inside their time window."""
    now = now or timezone.now()
    return (
        PersonalizationRule.objects.filter(enabled=True)
        .exclude(starts_at__gt=now)
        .exclude(ends_at__lte=now)
    )


def latest_results_by_experiment(
    experiments: Iterable[Experiment],
) -> dict[int, list[ExperimentResult]]:
    """The newest result of each metric of each experiment, primary first: one query.

    A result is kept when no result of the same experiment and metric is newer (served
    by the (experiment, metric, -computed_at) index); one query for any number of
    experiments, where a query per experiment made the status page grow with them.
    """
    by_pk = {exp.pk: exp for exp in experiments}
    newer = ExperimentResult.objects.filter(
        experiment=OuterRef("experiment"),
        metric=OuterRef("metric"),
        computed_at__gt=OuterRef("computed_at"),
    )
    rows = (
        ExperimentResult.objects.filter(experiment__in=list(by_pk))
        .exclude(Exists(newer))
        .order_by("-computed_at", "-pk")
    )
    seen: dict[int, dict[str, ExperimentResult]] = {pk: {} for pk in by_pk}
    for result in rows:
        result.experiment = by_pk[result.experiment_id]  # no query per result for alpha
        seen[result.experiment_id].setdefault(result.metric, result)
    return {
        pk: sorted(latest.values(), key=lambda r: (not r.is_primary, r.metric))
        for pk, latest in seen.items()
    }


def experiment_latest_results(experiment: Experiment) -> list[ExperimentResult]:
    """The newest result of each metric of an experiment, primary first."""
    return latest_results_by_experiment([experiment])[experiment.pk]


def experiments_running() -> QuerySet[Experiment]:
    return Experiment.objects.filter(status=Experiment.Status.RUNNING)


def experiments_shipped() -> QuerySet[Experiment]:
    """Stopped experiments whose shipped variant every targeted user is served."""
    return Experiment.objects.filter(status=Experiment.Status.STOPPED).exclude(shipped_variant="")


def persona_run_latest() -> PersonaModelRun | None:
    return PersonaModelRun.objects.order_by("-computed_at").first()


def result_summary(result: ExperimentResult) -> dict:
    """The figures an operator reads first, from one stored result."""
    return {
        "metric": result.metric,
        "primary": result.is_primary,
        "computed_at": result.computed_at,
        "users": result.users,
        "srm_p_value": result.srm_p_value,
        "srm_mismatch": result.srm_mismatch,
        "note": result.note,
        # Each arm's own rate or mean with its interval (Wilson / t), beside the comparisons.
        "arms": result.arms,
        # Per treatment: MDE now, users and days still needed for the minimum effect.
        "power": result.power,
        # Comparisons adjusted with the pre-exposure covariate, and the variance it removed.
        "cuped": result.cuped,
        "comparisons": [
            {
                "variant": c["variant"],
                "relative_lift": c["fixed"]["relative_lift"],
                "relative_lift_ci": c["fixed"]["relative_lift_ci"],
                "p_value": c["fixed"]["p_value"],
                "p_value_holm": c["p_value_holm"],
                "chance_to_beat_control": c["chance_to_beat_control"],
                "sequential_p_value": c["sequential"]["p_value"],
                "sequential_p_value_holm": c["sequential_p_value_holm"],
                "sequential_ci": c["sequential"]["ci"],
                # Holm-adjusted like the fixed-horizon p-value, so several variants
                # do not multiply the chances of a false "winner".
                "sequential_significant": c["sequential_p_value_holm"] < result.experiment.alpha,
            }
            for c in result.comparisons
        ],
    }


def status_report() -> dict:
    """GET personalization/status: personas, active rules, running experiments and results,
    shipped experiments."""
    run = persona_run_latest()
    running = list(experiments_running().annotate(exposure_count=Count("exposures")))
    latest = latest_results_by_experiment(running)
    experiments = [
        {
            "key": exp.key,
            "name": exp.name,
            "variants": exp.variants,
            "starts_at": exp.starts_at,
            "exposures": exp.exposure_count,
            "results": [result_summary(r) for r in latest[exp.pk]],
        }
        for exp in running
    ]
    return {
        "persona_distribution": persona_distribution(),
        "persona_model": (
            {
                "computed_at": run.computed_at,
                "users_total": run.users_total,
                "users_classified": run.users_classified,
                "temperature": run.temperature,
                "labelled_users": run.labelled_users,
                "accuracy": run.accuracy,
                "ece": run.ece,
                "brier": run.brier,
                "note": run.note,
            }
            if run
            else None
        ),
        "active_rules": [
            {"key": r.key, "name": r.name, "priority": r.priority, "conditions": r.conditions}
            for r in rules_active()
        ],
        "running_experiments": experiments,
        # What configurations serve after the experiments ended: one query for all.
        "shipped_experiments": [
            {
                "key": exp.key,
                "name": exp.name,
                "variant": exp.shipped_variant,
                "shipped_at": exp.shipped_at,
                "shipped_by": exp.shipped_by,
                "rollout_percent": exp.rollout_percent,
                # The scheduled ramp, if any (step 0: none).
                "rollout_step_percent": exp.rollout_step_percent,
                "rollout_step_hours": exp.rollout_step_hours,
                "rollout_next_step_at": exp.rollout_next_step_at,
                "targeting": exp.targeting,
                "ends_at": exp.ends_at,
            }
            for exp in experiments_shipped().order_by("-shipped_at", "pk")
        ],
    }


def overview_section() -> dict:
    """A few aggregates for the overview; every figure counted from the database."""
    run = persona_run_latest()
    running = list(experiments_running())
    latest = latest_results_by_experiment(running)
    return {
        "profiles": UserProfile.objects.count(),
        "persona_distribution": persona_distribution(),
        "persona_accuracy": run.accuracy if run else None,
        "persona_ece": run.ece if run else None,
        "active_rules": rules_active().count(),
        "rules_total": PersonalizationRule.objects.count(),
        "running_experiments": len(running),
        "shipped_experiments": experiments_shipped().count(),
        "experiments_with_srm": sum(
            any(r.srm_mismatch for r in results) for results in latest.values()
        ),
    }

"""Charts of the personalization admin pages, drawn with telemetry.charts (Plotly, offline)."""

from __future__ import annotations

from telemetry.charts import bar_chart, timeseries_chart

from . import selectors
from .engine.personas import PERSONAS
from .models import Experiment, ExperimentResult, PersonaModelRun


def persona_distribution_chart() -> str:
    distribution = selectors.persona_distribution()
    labels = [*PERSONAS, "none"]
    return bar_chart(
        "Users per persona (none: too little data)",
        labels=labels,
        values=[distribution.get(p, 0) for p in labels],
    )


def persona_history_chart(*, limit: int = 90) -> str | None:
    runs = list(PersonaModelRun.objects.order_by("-computed_at")[:limit])[::-1]
    if not runs:
        return None
    x = [r.computed_at for r in runs]
    return timeseries_chart(
        "Persona distribution over time",
        lines=[
            {"name": p, "x": x, "y": [r.distribution.get(p, 0) for r in runs]} for p in PERSONAS
        ],
        y_title="users",
    )


def experiment_lift_charts(experiment: Experiment) -> list[str]:
    """Per metric: relative lift of each variant over time, with its fixed-horizon interval
    (band) and the always-valid sequential interval on the difference (separate chart)."""
    charts = []
    metrics = (
        ExperimentResult.objects.filter(experiment=experiment)
        .values_list("metric", flat=True)
        .distinct()
    )
    for metric in sorted(set(metrics)):
        results = list(
            ExperimentResult.objects.filter(experiment=experiment, metric=metric)
            .exclude(comparisons=[])
            .order_by("computed_at")
        )
        if not results:
            continue
        x = [r.computed_at for r in results]
        lines, bands, seq_lines, seq_bands = [], [], [], []
        for variant in experiment.variant_names[1:]:

            def pick(result, variant=variant):
                return next((c for c in result.comparisons if c["variant"] == variant), None)

            rows = [pick(r) for r in results]
            if not all(rows):
                continue
            lines.append({"name": f"{variant} lift", "x": x,
                          "y": [c["fixed"]["relative_lift"] for c in rows]})  # fmt: skip
            bands.append({"name": f"{variant} {100 * (1 - experiment.alpha):.0f}% CI", "x": x,
                          "lower": [c["fixed"]["relative_lift_ci"]["lower"] for c in rows],
                          "upper": [c["fixed"]["relative_lift_ci"]["upper"] for c in rows]})  # fmt: skip
            seq_lines.append({"name": f"{variant} difference", "x": x,
                              "y": [c["sequential"]["estimate"] for c in rows]})  # fmt: skip
            seq_bands.append({"name": f"{variant} always-valid CI", "x": x,
                              "lower": [c["sequential"]["ci"]["lower"] for c in rows],
                              "upper": [c["sequential"]["ci"]["upper"] for c in rows]})  # fmt: skip
        zero = [{"name": "no effect", "x": x, "y": [0.0] * len(x), "line": {"dash": "dot"}}]
        charts.append(timeseries_chart(f"{metric}: relative lift vs control", lines=lines + zero,
                                       bands=bands, y_title="lift"))  # fmt: skip
        charts.append(timeseries_chart(f"{metric}: sequential (always-valid) interval",
                                       lines=seq_lines + zero, bands=seq_bands,
                                       y_title="difference"))  # fmt: skip
    return charts

"""Detection's pages: rules and tunings with their previews over history, and the
detector's own state."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from telemetry.admin_charts import ChartPage
from telemetry.charts import bar_chart

from .. import selectors
from ..models import (
    DetectionRule,
    DetectionTuning,
    DetectorState,
    LearnedModel,
)
from ..tunings import tuning_preview
from ..validation import rule_errors, tuning_errors
from .shared import PreviewPageMixin, ReadOnlyAdmin


@admin.register(DetectionTuning)
class DetectionTuningAdmin(PreviewPageMixin, admin.ModelAdmin):
    """Tunings, each with a page that replays the series it applies to over the last week
    under it, under the tuning they have now and at every sensitivity
    (`tunings.tuning_preview`, the scoring job's own detector)."""

    list_display = [
        "name",
        "series_name",
        "labels",
        "sensitivity",
        "direction",
        "enabled",
        "chart_link",
    ]
    list_filter = ["sensitivity", "direction", "enabled"]
    search_fields = ["name", "series_name", "comment"]
    readonly_fields = ["preview_link"]
    chart_url_name = "anomalies_detectiontuning_preview"
    preview_api = "anomaly/tunings/preview"

    def chart_page(self, request: HttpRequest, tuning: DetectionTuning) -> ChartPage:
        title = f"{tuning}: preview over the last {self.preview_days} days"
        if errors := tuning_errors(labels=tuning.labels):
            return self.skipped_page(title, "tuning", errors)
        answer = tuning_preview(tuning, days=self.preview_days)
        rows: list[tuple[str, object]] = [
            self.window_row(answer),
            (
                "series",
                f"{answer['series_matched']} matched, {answer['series_shadowed']} of them "
                "under a more specific tuning",
            ),
            (
                "alerts",
                f"{answer['alerts']} under this tuning, {answer['alerts_now']} under the "
                f"tunings they have now, over {answer['series_previewed']} series replayed",
            ),
        ]
        if answer["capped"]:
            rows.append(("capped", answer["note"]))
        if not tuning.enabled:
            rows.append(("disabled", "the scoring job does not apply it until it is enabled"))
        for row in answer["series"]:
            rows.append((row["series"], _tuning_preview_text(row)))
        chart = None
        if answer["series"]:
            chart = bar_chart(
                "Alerts under this tuning, per series",
                labels=[row["series"] for row in answer["series"]],
                values=[row["alerts"] for row in answer["series"]],
            )
        return ChartPage(title, [chart] if chart else [], rows)


def _tuning_preview_text(row: dict) -> str:
    now = row["tuning_now"] or "defaults"
    levels = ", ".join(f"{k} {v}" for k, v in row["by_sensitivity"].items())
    alerts = "; ".join(
        f"{a['at']:%m-%d %H:%M} {'stalled' if not a['direction'] else ('above' if a['direction'] > 0 else 'below')}"
        f" ({a['observed']:.4g}, expected {a['expected']:.4g})"
        for a in row["alert_points"]
    )
    more = row["alerts"] - len(row["alert_points"])
    text = (
        f"{row['alerts']} alerts (now {row['alerts_now']}: {now}, {row['sensitivity_now']}, "
        f"{row['direction_now']}); by sensitivity: {levels}; replayed from "
        f"{row['warmup_points']} points before the window and {row['points']} in it"
    )
    if alerts:
        text += f". At {alerts}" + (f"; and {more} earlier" if more else "")
    return text


@admin.register(DetectionRule)
class DetectionRuleAdmin(PreviewPageMixin, admin.ModelAdmin):
    """Rules, each with a page that replays it over the last week (`selectors.rule_preview`,
    the same evaluation as the scoring job): how noisy a threshold is, before it pages."""

    list_display = [
        "name",
        "series_name",
        "above",
        "below",
        "min_duration_seconds",
        "severity",
        "enabled",
        "chart_link",
    ]
    list_filter = ["enabled", "severity", "series_name"]
    search_fields = ["name", "series_name"]
    readonly_fields = ["preview_link"]
    chart_url_name = "anomalies_detectionrule_preview"
    preview_api = "anomaly/rules/preview"

    def chart_page(self, request: HttpRequest, rule: DetectionRule) -> ChartPage:
        title = f"{rule}: preview over the last {self.preview_days} days"
        # A row written from a shell may be one the job skips (scoring._usable_rules).
        if errors := rule_errors(labels=rule.labels, above=rule.above, below=rule.below):
            return self.skipped_page(title, "rule", errors)
        answer = selectors.rule_preview(
            series_name=rule.series_name,
            labels=rule.labels,
            above=rule.above,
            below=rule.below,
            min_duration_seconds=rule.min_duration_seconds,
            days=self.preview_days,
        )
        rows: list[tuple[str, object]] = [
            self.window_row(answer),
            ("series matched", answer["series_matched"]),
            ("would have fired", f"{answer['count']} times on {answer['series_firing']} series"),
            ("series data", _preview_source(answer)),
        ]
        if answer["capped"]:
            rows.append(("capped", answer["note"]))
        for row in answer["series"]:
            episodes = row["episodes"]
            text = (
                "never fired"
                if not episodes
                else "; ".join(
                    f"fired {e['fired_at']:%m-%d %H:%M} (breach {e['started_at']:%m-%d %H:%M}"
                    f" to {e['ended_at']:%m-%d %H:%M}{', ongoing' if e['ongoing'] else ''}, "
                    f"peak {e['peak']:.4g})"
                    for e in episodes
                )
            )
            more = row["count"] - len(episodes)
            rows.append((row["series"], text + (f"; and {more} earlier" if more else "")))
        firing = [row for row in answer["series"] if row["count"]]
        chart = None
        if firing:
            chart = bar_chart(
                "Times the rule would have fired, per series",
                labels=[row["series"] for row in firing],
                values=[row["count"] for row in firing],
            )
        return ChartPage(title, [chart], rows)


def _preview_source(answer: dict) -> str:
    if answer["source"] == "raw":
        return "raw samples"
    return f"hourly rollups before {answer['raw_from']:%Y-%m-%d %H:%M} (means), raw samples after"


@admin.register(DetectorState)
class DetectorStateAdmin(ReadOnlyAdmin):
    list_display = ["series", "last_ts", "points_scored", "updated_at"]
    search_fields = ["series__name"]
    list_filter = ["updated_at"]
    exclude = ["state"]


@admin.register(LearnedModel)
class LearnedModelAdmin(ReadOnlyAdmin):
    list_display = ["name", "windows", "trained_at", "updated_at"]
    search_fields = ["name"]
    list_filter = ["trained_at"]
    exclude = ["blob"]

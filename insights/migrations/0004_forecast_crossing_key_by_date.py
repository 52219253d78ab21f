"""Forecast-crossing insights: the key figure becomes the crossing's date, not the days left.

Insights about a forecast threshold crossing compared the days left until it, which halve
on their own as time passes, so a dismissed one reopened although the forecast had not
moved. They now compare the crossing's date (epoch seconds). This converts the stored
figures: a day count ``d`` measured at time ``t`` is the date ``t + d days``. The key
figure was measured at the insight's last run (``last_seen_at``); the reference of a
dismissed insight is the figure at dismissal (``status_changed_at``, at most one run after
it was measured). Other insights' reference was set when first seen or last moved, a time
not stored, so it becomes the current date: they measure later moves from today's forecast.
"""

from django.db import migrations

DAY_S = 86400.0
# A day count is at most a forecast horizon (years); a date in epoch seconds is ~1.7e9.
ALREADY_A_DATE = 1e8


def _is_crossing(insight) -> bool:
    return (insight.evidence or {}).get("kind") == "threshold_crossing"


def days_left_to_dates(apps, schema_editor):
    Insight = apps.get_model("insights", "Insight")
    changed = []
    for insight in Insight.objects.filter(category="forecast", source="forecasting"):
        if not _is_crossing(insight) or insight.key_value is None:
            continue
        if insight.key_value > ALREADY_A_DATE:
            continue  # written by the new code before this migration ran
        days_left, reference = insight.key_value, insight.reference_value
        insight.key_value = insight.last_seen_at.timestamp() + days_left * DAY_S
        if (
            insight.status == "dismissed"
            and reference is not None
            and insight.status_changed_at is not None
        ):
            insight.reference_value = insight.status_changed_at.timestamp() + reference * DAY_S
        else:
            insight.reference_value = insight.key_value
        changed.append(insight)
    Insight.objects.bulk_update(changed, ["key_value", "reference_value"], batch_size=500)


def dates_to_days_left(apps, schema_editor):
    Insight = apps.get_model("insights", "Insight")
    changed = []
    for insight in Insight.objects.filter(category="forecast", source="forecasting"):
        if not _is_crossing(insight) or insight.key_value is None:
            continue
        if insight.key_value <= ALREADY_A_DATE:
            continue
        at = insight.last_seen_at.timestamp()
        insight.key_value = max((insight.key_value - at) / DAY_S, 0.5)
        if insight.reference_value is not None:
            anchor = (
                insight.status_changed_at.timestamp()
                if insight.status == "dismissed" and insight.status_changed_at is not None
                else at
            )
            insight.reference_value = max((insight.reference_value - anchor) / DAY_S, 0.5)
        changed.append(insight)
    Insight.objects.bulk_update(changed, ["key_value", "reference_value"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("insights", "0003_segment_lineage"),
    ]

    operations = [
        migrations.RunPython(days_left_to_dates, dates_to_days_left),
    ]

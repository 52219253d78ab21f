"""The CLI faces (forecast CSV, recompute) and the admin pages with their charts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from forecasting import services
from forecasting.models import (
    BacktestResult,
    BusinessInsight,
    Forecast,
    ForecastPoint,
    ForecastTarget,
)
from phase3.models import JobRun
from tests.forecasting.factories import ForecastTargetFactory, hourly_values, series_with_values


def write_csv(path, values, *, start="2026-01-01 00:00:00", freq="h"):
    stamps = pd.date_range(start, periods=len(values), freq=freq)
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(
        path, index=False
    )
    return stamps


def test_forecast_command_writes_the_steps_after_the_last_row(tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    values = hourly_values(20)
    stamps = write_csv(source, values)
    call_command("forecast", str(source), "--horizon", "30", "--out", str(out))
    result = pd.read_csv(out)
    assert list(result.columns) == ["timestamp", "yhat", "yhat_lower", "yhat_upper"]
    assert len(result) == 30
    times = pd.to_datetime(result["timestamp"])
    assert times.iloc[0] == stamps[-1] + pd.Timedelta(hours=1)
    assert (times.diff().dropna() == pd.Timedelta(hours=1)).all()
    assert (result["yhat_lower"] <= result["yhat"]).all()
    assert (result["yhat"] <= result["yhat_upper"]).all()
    # the daily cycle carries into the forecast: it tracks the true continuation closely
    i = np.arange(values.size, values.size + 30)
    truth = 100 + i / 24 + 10 * np.sin(2 * np.pi * i / 24)
    assert np.mean(np.abs(result["yhat"] - truth)) < 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,value\n2026-01-01,1\n", "missing column(s) timestamp"),
        ("timestamp,value\n2026-01-01 00:00,1\n2026-01-01 01:00,abc\n", "line 3: unreadable value"),
        ("timestamp,value\nyesterday-ish,1\n", "line 2: unreadable timestamp"),
        ("timestamp,value\n2026-01-01 00:00,1\n2026-01-01 01:00,2\n", "need at least"),
        ("", "not a readable CSV"),
    ],
)
def test_forecast_command_explains_bad_input(tmp_path, content, message):
    source = tmp_path / "in.csv"
    source.write_text(content)
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("forecast", str(source), "--horizon", "3", "--out", str(tmp_path / "o.csv"))
    assert not (tmp_path / "o.csv").exists()


def test_forecast_command_refuses_a_missing_file_and_a_bad_horizon(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("forecast", str(tmp_path / "nope.csv"), "--horizon", "3", "--out", "x.csv")
    source = tmp_path / "in.csv"
    write_csv(source, hourly_values(3))
    with pytest.raises(CommandError, match="horizon"):
        call_command("forecast", str(source), "--horizon", "0", "--out", str(tmp_path / "o.csv"))


@pytest.mark.django_db
def test_recompute_command_counts_what_it_did(capsys):
    ForecastTargetFactory(
        prediction_type="traffic", series=series_with_values("t.cmd", hourly_values(30))
    )
    call_command("forecasts_recompute", "--type", "traffic", "--horizon", "7")
    out = capsys.readouterr().out
    assert '"forecasts": 1' in out
    assert Forecast.objects.filter(prediction_type="traffic", horizon_days=7).count() == 1


@pytest.fixture
def computed(db):
    target = ForecastTargetFactory(
        name="cpu", prediction_type="resource_usage", threshold=0.9,
        series=series_with_values("t.adm", hourly_values(30, level=0.5, slope_per_day=0.01,
                                                          noise=0.01, amplitude=0.05)),
    )  # fmt: skip
    return services.forecast_compute(target_id=target.pk, horizon_days=7).forecast


@pytest.mark.parametrize(
    "model",
    [Forecast, ForecastPoint, BacktestResult, BusinessInsight, ForecastTarget],
)
def test_every_admin_changelist_renders(admin_client, computed, model):
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "cpu"}).status_code == 200


def test_forecast_chart_page_draws_history_forecast_and_bands(admin_client, computed):
    response = admin_client.get(reverse("admin:forecasting_forecast_chart", args=[computed.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    for name in ("history", "forecast", "80% interval", "95% interval"):
        assert name in html
    assert "plotly/plotly.min.js" in html  # served locally, no internet needed
    target_page = admin_client.get(
        reverse("admin:forecasting_target_chart", args=[computed.target_id])
    )
    assert target_page.status_code == 200 and "80% interval" in target_page.content.decode()


def test_admin_recompute_action_queues_a_task_per_horizon(
    admin_client, computed, celery_eager, django_capture_on_commit_callbacks
):
    url = reverse("admin:forecasting_forecast_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url, {"action": "recompute_now", "_selected_action": [computed.pk]}, follow=True
        )
    assert response.status_code == 200
    assert "Queued 1 forecast tasks" in response.content.decode()
    run = JobRun.objects.get(task_name="forecasting.recompute_series")
    assert run.status == "success" and run.kwargs == {"target_id": computed.target_id,
                                                      "horizon_days": 7}  # fmt: skip
    assert Forecast.objects.filter(target=computed.target, horizon_days=7).count() == 1


def test_an_insight_page_cannot_edit_what_the_job_owns(admin_client, computed):
    # Posting the values the page was opened with made an insight the job had retired current
    # again, next to its successor.
    insight = BusinessInsight.objects.filter(forecast=computed).first()
    url = reverse("admin:forecasting_businessinsight_change", args=[insight.pk])
    form = admin_client.get(url).context["adminform"].form
    assert not {"is_current", "summary", "threshold", "expected_at", "value"} & set(form.fields)
    BusinessInsight.objects.filter(pk=insight.pk).update(is_current=False)  # the job retires it
    response = admin_client.post(url, {"is_current": "on", "summary": "stale", "_save": "Save"})
    assert response.status_code == 302
    insight.refresh_from_db()
    assert not insight.is_current and insight.summary != "stale"


def test_saving_an_insight_in_the_admin_keeps_what_the_job_wrote_meanwhile(computed):
    from django.contrib import admin

    insight = BusinessInsight.objects.filter(forecast=computed).first()
    page = BusinessInsight.objects.get(pk=insight.pk)  # the change page as the operator loaded it
    BusinessInsight.objects.filter(pk=insight.pk).update(is_current=False, summary="retired")
    admin.site._registry[BusinessInsight].save_model(None, page, None, change=True)
    insight.refresh_from_db()
    assert (insight.is_current, insight.summary) == (False, "retired")


def test_clearing_a_threshold_in_the_admin_retires_the_crossing(admin_client, computed):
    target = computed.target
    crossing = BusinessInsight.objects.get(target=target, kind="threshold_crossing")
    url = reverse("admin:forecasting_forecasttarget_change", args=[target.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    data["enabled"] = "on"
    same = admin_client.post(url, {**data, "_save": "Save"})
    assert same.status_code == 302
    crossing.refresh_from_db()
    assert crossing.is_current  # a save that changes no limit keeps it
    response = admin_client.post(url, {**data, "threshold": "", "_save": "Save"})
    assert response.status_code == 302
    crossing.refresh_from_db()
    assert not crossing.is_current


def test_repointing_a_target_in_the_admin_retires_its_forecasts(admin_client, computed):
    target = computed.target
    other = series_with_values("t.adm.other", hourly_values(30))
    url = reverse("admin:forecasting_forecasttarget_change", args=[target.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    data["enabled"] = "on"
    response = admin_client.post(url, {**data, "series": other.pk, "_save": "Save"})
    assert response.status_code == 302
    computed.refresh_from_db()
    assert not computed.is_current
    assert not BusinessInsight.objects.filter(target=target, is_current=True).exists()

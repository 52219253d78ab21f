"""API: filters validated as 400s naming the field, roles, fan-out on POST, schema conformance."""

from __future__ import annotations

import pytest

from forecasting import selectors, services
from forecasting.models import HORIZONS, BusinessInsight, Forecast, ForecastTarget
from tests.choices import assert_names_valid_choices
from tests.forecasting.factories import ForecastTargetFactory, hourly_values, series_with_values
from tests.schema import assert_matches_schema

pytestmark = pytest.mark.django_db

API = "/admin/api/phase3/"


@pytest.fixture
def forecasts():
    """Two targets of different types, each forecast over 7 and 30 days."""
    traffic = ForecastTargetFactory(
        name="req", prediction_type="traffic",
        series=series_with_values("http.requests.rate", hourly_values(30)),
    )  # fmt: skip
    cpu = ForecastTargetFactory(
        name="cpu", prediction_type="resource_usage", threshold=0.9,
        series=series_with_values(
            "system.cpu.utilization", hourly_values(30, level=0.5, slope_per_day=0.005,
                                                    noise=0.01, amplitude=0.05)
        ),
    )  # fmt: skip
    for target in (traffic, cpu):
        for horizon in (7, 30):
            services.forecast_compute(target_id=target.pk, horizon_days=horizon)
    return {"traffic": traffic, "cpu": cpu}


def get(client, path, **params):
    response = client.get(API + path, params)
    if response.status_code == 200:
        assert_matches_schema(response, API + path)
    return response


def test_predictions_filter_by_type_and_horizon(client_with_role, forecasts):
    client = client_with_role("viewer")
    everything = get(client, "analytics/predictions").json()
    assert everything["count"] == 4
    only = get(client, "analytics/predictions", type="traffic", horizon=30).json()
    assert only["count"] == 1
    row = only["results"][0]
    assert row["prediction_type"] == "traffic" and row["horizon_days"] == 30
    assert row["model_name"] and row["backtest_mase"] is not None
    assert len(row["points"]) == round(row["horizon_days"] * 86400 / row["step_seconds"])
    first = row["points"][0]
    assert first["lower95"] <= first["lower80"] <= first["yhat"] <= first["upper80"]
    slim = get(client, "analytics/predictions", points="false").json()
    assert "points" not in slim["results"][0]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"type": "weather"}, "type"), ({"horizon": "8"}, "horizon"), ({"points": "maybe"}, "points")],
)
def test_predictions_bad_filters_are_400_naming_the_field(client_with_role, params, field):
    response = client_with_role("viewer").get(API + "analytics/predictions", params)
    assert response.status_code == 400
    assert field in response.json()


def test_predictions_answer_with_and_without_slash_and_need_a_key(api_client, client_with_role):
    assert api_client.get(API + "analytics/predictions").status_code == 401
    client = client_with_role("viewer")
    assert client.get(API + "analytics/predictions/").status_code == 200
    assert client.get(API + "analytics/predictions").status_code == 200


def test_forecast_detail_carries_points_and_every_backtest(client_with_role, forecasts):
    client = client_with_role("viewer")
    listing = get(client, "forecasting/forecasts", type="resource_usage", current="true").json()
    assert listing["count"] == 2
    forecast_id = listing["results"][0]["id"]
    detail = get(client, f"forecasting/forecasts/{forecast_id}").json()
    stored = Forecast.objects.get(pk=forecast_id)
    assert len(detail["points"]) == stored.points.count()
    assert len(detail["backtests"]) == stored.backtests.count()
    assert [b["model_name"] for b in detail["backtests"] if b["is_chosen"]] == [stored.model_name]
    assert client.get(API + "forecasting/forecasts", {"horizon": "2"}).status_code == 400


def test_backtests_and_insights_are_listed_and_filtered(client_with_role, forecasts):
    client = client_with_role("viewer")
    forecast = Forecast.objects.filter(target=forecasts["cpu"], horizon_days=30).get()
    chosen = get(client, "forecasting/backtests", forecast=forecast.pk, chosen="true").json()
    assert [r["model_name"] for r in chosen["results"]] == [forecast.model_name]
    crossings = get(client, "forecasting/insights", kind="threshold_crossing").json()
    stored = BusinessInsight.objects.filter(kind="threshold_crossing").count()
    assert crossings["count"] == stored == 2  # the cpu target has a limit, for both horizons
    response = client.get(API + "forecasting/insights", {"kind": "horoscope"})
    assert response.status_code == 400 and "kind" in response.json()


def test_recompute_needs_an_operator_and_fans_out(
    client_with_role, celery_eager, django_capture_on_commit_callbacks
):
    series_with_values("http.requests.rate", hourly_values(30))
    body = {"type": "traffic", "horizons": [7]}
    viewer = client_with_role("viewer")
    assert viewer.post(API + "forecasting/recompute", body, format="json").status_code == 403
    operator = client_with_role("operator")
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(API + "forecasting/recompute", body, format="json")
    assert response.status_code == 202
    assert_matches_schema(response, API + "forecasting/recompute", "post")
    traffic_targets = ForecastTarget.objects.filter(prediction_type="traffic").count()
    assert response.json()["queued"] == traffic_targets == 1
    assert Forecast.objects.filter(prediction_type="traffic", horizon_days=7).count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "type"),
        ({"type": "weather"}, "type"),
        ({"type": "traffic", "horizons": [8]}, "horizons"),
        ({"type": "traffic", "horizons": []}, "horizons"),
    ],
)
def test_recompute_bad_body_is_400_naming_the_field(client_with_role, body, field):
    response = client_with_role("operator").post(API + "forecasting/recompute", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Forecast.objects.exists()


def test_targets_are_edited_by_admins_only_and_validated(client_with_role):
    good = {"name": "signups", "prediction_type": "user_growth", "source": "events",
            "event_metric": "new_users"}  # fmt: skip
    assert (
        client_with_role("operator").post(API + "forecasting/targets", good, format="json")
    ).status_code == 403
    admin = client_with_role("admin")
    created = admin.post(API + "forecasting/targets", good, format="json")
    assert created.status_code == 201
    bad = {**good, "name": "other", "event_metric": "vibes"}
    response = admin.post(API + "forecasting/targets", bad, format="json")
    assert response.status_code == 400 and "event_metric" in response.json()
    no_series = {**good, "name": "third", "source": "series", "event_metric": ""}
    response = admin.post(API + "forecasting/targets", no_series, format="json")
    assert response.status_code == 400 and "series" in response.json()
    target_id = created.json()["id"]
    patch = admin.patch(API + f"forecasting/targets/{target_id}", {"threshold": 500},
                        format="json")  # fmt: skip
    assert patch.status_code == 200 and patch.json()["threshold"] == 500


def test_every_forecasting_horizon_is_offered_in_the_schema():
    from tests.schema import openapi

    params = openapi()["paths"]["/admin/api/phase3/analytics/predictions/"]["get"]["parameters"]
    horizon = next(p for p in params if p["name"] == "horizon")
    assert sorted(horizon["schema"]["enum"]) == sorted(HORIZONS)


def test_overview_includes_the_forecasting_section(client_with_role, forecasts):
    body = client_with_role("viewer").get(API + "overview").json()
    assert (
        body["forecasting"]["forecasts_current"] == Forecast.objects.filter(is_current=True).count()
    )


def test_changing_a_targets_limit_retires_its_crossings_at_once(client_with_role, forecasts):
    # The crossing dates answer the old limit; without this they stood until each horizon's
    # next recompute, a day for the long ones.
    admin = client_with_role("admin")
    cpu = forecasts["cpu"]
    crossings = BusinessInsight.objects.filter(target=cpu, kind="threshold_crossing")
    assert crossings.filter(is_current=True).count() == 2  # one per horizon
    renamed = admin.patch(API + f"forecasting/targets/{cpu.pk}", {"name": "cpu2"}, format="json")
    assert renamed.status_code == 200 and crossings.filter(is_current=True).count() == 2
    response = admin.patch(API + f"forecasting/targets/{cpu.pk}", {"threshold": 0.95},
                           format="json")  # fmt: skip
    assert response.status_code == 200 and not crossings.filter(is_current=True).exists()
    other = BusinessInsight.objects.filter(target=forecasts["traffic"], is_current=True)
    assert other.exists()  # another target's insights are untouched


def test_repointing_a_target_retires_the_old_series_forecasts_at_once(client_with_role, forecasts):
    # scaling asks forecast_for_series for the new series and got the old series' forecast
    traffic = forecasts["traffic"]
    bigger = series_with_values("http.requests.rate", hourly_values(30, level=10_000.0), env="b")
    admin = client_with_role("admin")
    response = admin.patch(API + f"forecasting/targets/{traffic.pk}", {"series": bigger.pk},
                           format="json")  # fmt: skip
    assert response.status_code == 200
    assert selectors.forecast_for_series(bigger.pk, horizon_days=7) is None
    assert not Forecast.objects.filter(target=traffic, is_current=True).exists()
    assert not BusinessInsight.objects.filter(target=traffic, is_current=True).exists()
    assert Forecast.objects.filter(target=traffic).count() == 2  # kept as history
    assert Forecast.objects.filter(target=forecasts["cpu"], is_current=True).count() == 2
    services.forecast_compute(target_id=traffic.pk, horizon_days=7)
    levels = selectors.forecast_arrays(selectors.forecast_for_series(bigger.pk))["yhat"]
    assert levels.mean() > 1000  # the new series' level, not the old one's


def test_a_switched_off_target_is_not_served_to_capacity_planning(client_with_role, forecasts):
    traffic = forecasts["traffic"]
    assert selectors.forecast_for_series(traffic.series_id, horizon_days=7) is not None
    admin = client_with_role("admin")
    response = admin.patch(API + f"forecasting/targets/{traffic.pk}", {"enabled": False},
                           format="json")  # fmt: skip
    assert response.status_code == 200
    assert not selectors.forecasts_current().filter(target=traffic).exists()
    assert selectors.forecast_for_series(traffic.series_id, horizon_days=7) is None


def test_a_bad_horizon_is_400_listing_the_valid_horizons(client_with_role):
    response = get(client_with_role("viewer"), "analytics/predictions", horizon="7d")
    assert_names_valid_choices(response, "horizon", "7d", sorted(HORIZONS))

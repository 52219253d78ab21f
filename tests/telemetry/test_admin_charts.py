"""The shared chart page of every admin: staff see it, anyone else is sent to the login page."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from telemetry.admin_charts import ChartAdminMixin
from telemetry.services import series_ensure

pytestmark = pytest.mark.django_db

CHART_ADMINS = [ma for ma in admin.site._registry.values() if isinstance(ma, ChartAdminMixin)]


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@x.org", "pw"))
    return client


def test_every_app_uses_the_mixin():
    labels = {ma.model._meta.app_label for ma in CHART_ADMINS}
    assert labels >= {"telemetry", "optimization", "personalization", "forecasting", "scaling",
                      "insights", "anomalies"}  # fmt: skip


def test_staff_superuser_sees_the_chart_and_the_changelist_links_to_it(staff):
    series = series_ensure(name="test.admin.chart", unit="ratio")
    url = reverse("admin:telemetry_series_chart", args=[series.pk])
    response = staff.get(url)
    assert response.status_code == 200
    assert "test.admin.chart" in response.content.decode()
    changelist = staff.get(reverse("admin:telemetry_series_changelist"))
    assert f'href="{url}"' in changelist.content.decode()


@pytest.mark.parametrize("model_admin", CHART_ADMINS, ids=lambda ma: ma.chart_url_name)
def test_anonymous_user_is_sent_to_the_login_page(client, model_admin):
    url = reverse(f"admin:{model_admin.chart_url_name}", args=[1])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={url}"


@pytest.mark.parametrize("model_admin", CHART_ADMINS, ids=lambda ma: ma.chart_url_name)
def test_a_missing_object_is_not_found(staff, model_admin):
    assert staff.get(reverse(f"admin:{model_admin.chart_url_name}", args=[0])).status_code == 404


def test_a_logged_in_user_without_staff_status_is_sent_to_the_login_page(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("plain", "plain@x.org", "pw"))
    series = series_ensure(name="test.admin.chart", unit="ratio")
    response = client.get(reverse("admin:telemetry_series_chart", args=[series.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))

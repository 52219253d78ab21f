"""Every model of every system is in the admin, and its pages render on real demo data."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.urls import reverse

# The project's own apps: the six systems and the two they stand on.
PROJECT_APPS = ("phase3", "telemetry", *settings.PHASE3_SYSTEMS)


def _project_models():
    return [
        m
        for m in apps.get_models()
        if m._meta.app_label in PROJECT_APPS and not m._meta.auto_created
    ]


def test_every_project_model_is_registered_in_the_admin():
    missing = [m._meta.label for m in _project_models() if m not in admin.site._registry]
    assert not missing, f"not in the admin: {missing}"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model",
    [m for m in _project_models() if m in admin.site._registry],
    ids=lambda m: m._meta.label,
)
def test_changelist_and_first_change_page_render(model, admin_client, demo_world):
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "x"}).status_code == 200
    obj = model.objects.order_by("pk").first()
    if obj is not None:
        change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        assert admin_client.get(change).status_code == 200

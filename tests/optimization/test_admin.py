"""Admin pages render for every model, with charts, and actions call the services."""

from __future__ import annotations

import pytest
from django.urls import reverse

from optimization import services
from optimization.models import Baseline, Recommendation

from .factories import small_world

pytestmark = pytest.mark.django_db

MODELS = ["recommendation", "baseline", "healthsnapshot", "analysisreport", "endpointprofile",
          "queryshapestat"]  # fmt: skip


def test_every_changelist_and_the_charts_render(admin_client):
    small_world(seed=7)
    services.baselines_recompute()
    services.analysis_run()
    for model in MODELS:
        response = admin_client.get(reverse(f"admin:optimization_{model}_changelist"))
        assert response.status_code == 200, model
    health = admin_client.get(reverse("admin:optimization_healthsnapshot_changelist"))
    assert b"plotly" in health.content.lower()
    baseline = Baseline.objects.get(metric="http.latency.p95", endpoint="/r")
    chart = admin_client.get(reverse("admin:optimization_baseline_chart", args=[baseline.pk]))
    assert chart.status_code == 200 and b"baseline median" in chart.content


def test_admin_actions_move_recommendations_through_their_lifecycle(admin_client):
    small_world(seed=8)
    services.analysis_run()
    rec = Recommendation.objects.get(category="n_plus_one", endpoint="/r")
    url = reverse("admin:optimization_recommendation_changelist")
    admin_client.post(url, {"action": "claim", "_selected_action": [rec.pk]})
    rec.refresh_from_db()
    assert rec.state == "claimed" and rec.claimed_by
    response = admin_client.post(
        url, {"action": "claim", "_selected_action": [rec.pk]}, follow=True
    )
    assert b"cannot claim" in response.content
    admin_client.post(url, {"action": "dismiss", "_selected_action": [rec.pk]})
    rec.refresh_from_db()
    assert rec.state == "dismissed"

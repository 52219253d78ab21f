"""API: roles, validation (400 naming the field), the analysis and the operator actions."""

from __future__ import annotations

import pytest

from optimization import services
from optimization.models import Recommendation
from tests.choices import assert_names_valid_choices

from .factories import small_world

pytestmark = pytest.mark.django_db
API = "/admin/api/phase3/optimization"


@pytest.fixture
def analysed():
    small_world(seed=4)
    services.baselines_recompute()
    services.analysis_run()
    return Recommendation.objects.get(category="n_plus_one", endpoint="/r")


def test_analyze_serves_the_stored_report_with_health_and_recommendations(
    client_with_role, analysed
):
    response = client_with_role("viewer").get(f"{API}/analyze")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["source"] == "stored"
    assert set(body["health"]["breakdown"]) >= {"latency", "errors", "saturation"}
    assert analysed.pk in [r["id"] for r in body["recommendations"]]
    assert "/r" in {f["endpoint"] for f in body["bottlenecks"]["n_plus_one"]}
    assert client_with_role("viewer").get(f"{API}/analyze/").status_code == 200


def test_analyze_computes_without_storing_when_no_report_is_fresh(client_with_role):
    small_world(seed=5)
    response = client_with_role("viewer").get(f"{API}/analyze")
    assert response.status_code == 200
    assert response.json()["source"] == "computed"
    assert not Recommendation.objects.exists()  # a GET never writes


def test_analyze_validates_its_query_and_post_needs_an_operator(client_with_role):
    response = client_with_role("viewer").get(f"{API}/analyze", {"limit": "lots"})
    assert response.status_code == 400 and "limit" in response.json()
    assert client_with_role("viewer").post(f"{API}/analyze").status_code == 403
    small_world(seed=6)
    response = client_with_role("operator").post(f"{API}/analyze")
    assert response.status_code == 201 and response.json()["source"] == "stored"


def test_recommendation_actions_follow_the_lifecycle(client_with_role, analysed):
    operator = client_with_role("operator")
    url = f"{API}/recommendations/{analysed.pk}"
    assert client_with_role("viewer").post(f"{url}/claim").status_code == 403
    response = operator.post(f"{url}/claim")
    assert response.status_code == 200 and response.json()["state"] == "claimed"
    again = operator.post(f"{url}/claim")
    assert again.status_code == 400 and "state" in again.json()
    bad = operator.post(f"{url}/applied", {"applied_at": "yesterday-ish"}, format="json")
    assert bad.status_code == 400 and "applied_at" in bad.json()
    future = operator.post(f"{url}/applied", {"applied_at": "2999-01-01T00:00:00Z"}, format="json")
    assert future.status_code == 400 and "applied_at" in future.json()
    # year 1 was accepted, then every nightly verification failed on a date overflow
    ancient = operator.post(f"{url}/applied", {"applied_at": "0001-01-02T00:00:00Z"}, format="json")
    assert ancient.status_code == 400 and "applied_at" in ancient.json()
    applied = operator.post(f"{url}/applied", {}, format="json")
    assert applied.status_code == 200 and applied.json()["applied_at"]
    rolled = operator.post(f"{url}/rollback", {"reason": "slower"}, format="json")
    assert rolled.status_code == 200 and rolled.json()["state"] == "failed"
    assert operator.post(f"{url}/dismiss").status_code == 400


def test_lists_filter_and_reject_bad_filters(client_with_role, analysed):
    viewer = client_with_role("viewer")
    listed = viewer.get(f"{API}/recommendations", {"state": "active"})
    assert listed.status_code == 200
    rows = listed.json()["results"] if isinstance(listed.json(), dict) else listed.json()
    assert {r["state"] for r in rows} == {"active"}
    bad = viewer.get(f"{API}/recommendations", {"state": "done"})
    assert bad.status_code == 400 and "state" in bad.json()
    assert viewer.get(f"{API}/baselines", {"endpoint": "/r"}).status_code == 200
    assert viewer.get(f"{API}/health").status_code == 200
    bad_days = viewer.get(f"{API}/health", {"days": 0})
    assert bad_days.status_code == 400 and "days" in bad_days.json()
    assert viewer.get(f"{API}/recommendations/999999").status_code == 404


def test_no_key_is_refused(api_client):
    assert api_client.get(f"{API}/analyze").status_code == 401


def test_overview_carries_the_optimization_section(client_with_role, analysed):
    body = client_with_role("viewer").get("/admin/api/phase3/overview").json()
    section = body["optimization"]
    assert section["health_score"] is not None
    assert analysed.pk in [r["id"] for r in section["top_recommendations"]]


def test_a_bad_state_filter_is_400_listing_the_states(client_with_role):
    response = client_with_role("viewer").get(f"{API}/recommendations", {"state": "done"})
    assert_names_valid_choices(response, "state", "done", Recommendation.State.values)

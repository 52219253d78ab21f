"""The insights API: roles, validation, and figures that come from the database."""

from __future__ import annotations

import pytest

from insights.models import Insight, MLModel
from tests.choices import assert_names_valid_choices
from tests.schema import assert_matches_schema

from .factories import InsightFactory, MLModelFactory, SegmentFactory

pytestmark = pytest.mark.django_db

BASE = "/admin/api/phase3/insights"


def test_status_reports_stored_scores_segments_and_top_insights(client_with_role):
    model = MLModelFactory(name="user-segments", is_active=True)
    MLModelFactory(name="user-segments", version=2, is_active=False)
    SegmentFactory(model=model)
    low, high = InsightFactory(priority=0.1), InsightFactory(priority=0.7)
    InsightFactory(priority=0.9, status=Insight.Status.DISMISSED)
    response = client_with_role("viewer").get(f"{BASE}/status")
    assert response.status_code == 200, response.content
    assert_matches_schema(response, "/admin/api/phase3/insights/status")
    body = response.json()
    (row,) = body["models"]
    assert row["score"] == pytest.approx(model.primary_score)
    assert row["versions"] == 2 and row["active_version"] == model.version
    assert [s["name"] for s in body["segments"]] == [model.segments.get().name]
    assert [i["id"] for i in body["top_insights"]] == [high.pk, low.pk]


def test_status_score_changes_when_another_version_is_activated(client_with_role):
    old = MLModelFactory(name="n", is_active=True, primary_score=0.3)
    new = MLModelFactory(name="n", version=2, primary_score=0.6)
    admin = client_with_role("admin")
    assert admin.get(f"{BASE}/status").json()["models"][0]["score"] == pytest.approx(0.3)
    assert admin.post(f"{BASE}/models/{new.pk}/activate").status_code == 200
    assert admin.get(f"{BASE}/status/").json()["models"][0]["score"] == pytest.approx(0.6)
    old.refresh_from_db()
    assert not old.is_active


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("status?limit=0", "limit"),
        ("status?limit=abc", "limit"),
        ("insights?status=maybe", "status"),
        ("insights?category=weather", "category"),
        ("models?kind=neural", "kind"),
        ("segments?current=perhaps", "current"),
        ("feature-impact?outcome=happiness", "outcome"),
    ],
)
def test_bad_query_parameters_get_a_400_naming_the_field(client_with_role, path, field):
    response = client_with_role("viewer").get(f"{BASE}/{path}")
    assert response.status_code == 400
    assert field in response.json()


def test_operators_acknowledge_and_dismiss_viewers_cannot(client_with_role):
    insight = InsightFactory()
    assert (
        client_with_role("viewer").post(f"{BASE}/insights/{insight.pk}/dismiss").status_code == 403
    )
    operator = client_with_role("operator")
    response = operator.post(f"{BASE}/insights/{insight.pk}/acknowledge/")
    assert response.status_code == 200
    assert_matches_schema(response, f"{BASE}/insights/{insight.pk}/acknowledge/", "post")
    assert response.json()["status"] == "acknowledged"
    assert response.json()["status_changed_by"].startswith("key:")
    assert operator.post(f"{BASE}/insights/{insight.pk}/dismiss").json()["status"] == "dismissed"
    insight.refresh_from_db()
    assert insight.status == Insight.Status.DISMISSED
    assert operator.post(f"{BASE}/insights/999999/dismiss").status_code == 404


def test_only_admins_activate_model_versions(client_with_role):
    model = MLModelFactory()
    assert (
        client_with_role("operator").post(f"{BASE}/models/{model.pk}/activate").status_code == 403
    )
    assert not MLModel.objects.get(pk=model.pk).is_active


def test_insights_list_filters_and_orders_by_priority(client_with_role):
    InsightFactory(priority=0.2, category=Insight.Category.FORECAST, source="forecasting")
    InsightFactory(priority=0.8, category=Insight.Category.SEGMENT)
    InsightFactory(priority=0.5, category=Insight.Category.SEGMENT)
    viewer = client_with_role("viewer")
    response = viewer.get(f"{BASE}/insights?category=segment")
    assert_matches_schema(response, f"{BASE}/insights")
    rows = response.json()
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert [r["priority"] for r in rows] == sorted((r["priority"] for r in rows), reverse=True)
    assert {r["category"] for r in rows} == {"segment"} and len(rows) == 2
    forecasting = viewer.get(f"{BASE}/insights?source=forecasting").json()
    forecasting = forecasting["results"] if isinstance(forecasting, dict) else forecasting
    assert len(forecasting) == 1


def test_model_listing_never_exposes_the_artefact(client_with_role):
    MLModelFactory()
    response = client_with_role("viewer").get(f"{BASE}/models")
    assert_matches_schema(response, f"{BASE}/models")
    rows = response.json()
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert rows and "artefact" not in rows[0] and rows[0]["artefact_sha256"]


def test_models_show_the_rule_and_reason_of_their_activation(client_with_role):
    """Why a version is (not) active, and the paired figures, are readable by API clients."""
    from insights.services.registry import mlmodel_register

    def register(features: list[str], score: float) -> MLModel:
        return mlmodel_register(
            name="why", kind="clustering", fitted={}, metrics={"silhouette": score},
            parameters={"features": features}, training_rows=10, holdout_rows=5,
        )  # fmt: skip

    register(["a"], 0.6)
    changed = register(["a", "b"], 0.1)
    viewer = client_with_role("viewer")
    response = viewer.get(f"{BASE}/models?name=why&active=true")
    assert_matches_schema(response, f"{BASE}/models")
    rows = response.json()
    (row,) = rows["results"] if isinstance(rows, dict) else rows
    assert row["id"] == changed.pk and row["activation_rule"] == "inputs_changed"
    assert "added b" in row["activation_reason"] and row["comparison"] == {}
    status = viewer.get(f"{BASE}/status").json()
    (summary,) = [m for m in status["models"] if m["name"] == "why"]
    assert summary["activation_rule"] == "inputs_changed"
    old = MLModel.objects.get(name="why", version=1)
    admin = client_with_role("admin")
    body = admin.post(f"{BASE}/models/{old.pk}/activate").json()
    assert body["activation_rule"] == "manual" and "at registration" in body["activation_reason"]


def test_requests_without_a_key_are_refused(api_client):
    assert api_client.get(f"{BASE}/status").status_code == 401


def test_overview_gains_the_insights_section(client_with_role):
    MLModelFactory(name="user-segments", is_active=True)
    InsightFactory()
    body = client_with_role("viewer").get("/admin/api/phase3/overview").json()
    section = body["insights"]
    assert section["models"][0]["name"] == "user-segments"
    assert section["insights_by_status"] == {"new": 1}


def test_segment_listing_carries_sizes_over_time(client_with_role):
    segment = SegmentFactory()
    segment.snapshots.create(day="2026-01-01", size=10, share=0.2)
    segment.snapshots.create(day="2026-01-02", size=12, share=0.25)
    response = client_with_role("viewer").get(f"{BASE}/segments?current=true")
    assert response.status_code == 200
    assert_matches_schema(response, f"{BASE}/segments")
    rows = response.json()
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert [s["size"] for s in rows[0]["snapshots"]] == [10, 12]


def test_status_queries_do_not_grow_with_segments_and_insights(
    client_with_role, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_with_role("viewer")
    model = MLModelFactory(name="user-segments", is_active=True)
    SegmentFactory(model=model)
    InsightFactory()
    client.get(f"{BASE}/status")  # warm caches (content types, key lookup)
    with CaptureQueriesContext(connection) as few:
        client.get(f"{BASE}/status")
    for _ in range(5):
        segment = SegmentFactory(model=model)
        segment.snapshots.create(day="2026-01-01", size=1, share=0.1)
        InsightFactory()
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(f"{BASE}/status").status_code == 200


def test_activating_a_pruned_version_is_a_400(client_with_role):
    pruned = MLModelFactory(artefact=b"", artefact_size=0)
    response = client_with_role("admin").post(f"{BASE}/models/{pruned.pk}/activate")
    assert response.status_code == 400 and "model" in response.json()
    assert not MLModel.objects.get(pk=pruned.pk).is_active


def test_a_bad_category_filter_is_400_listing_the_categories(client_with_role):
    response = client_with_role("viewer").get(f"{BASE}/insights", {"category": "gossip"})
    assert_names_valid_choices(response, "category", "gossip", Insight.Category.values)


def _selects_artefacts(queries) -> list[str]:
    """SQL of the queries that read a model's artefact bytes (not its checksum or size)."""
    import re

    column = re.compile(r'"insights_mlmodel"\."artefact"(?!_)')
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")
            and column.search(q["sql"])]  # fmt: skip


def _results_with_models():
    from django.utils import timezone

    from insights.models import FeatureImpact, StatePattern

    segments = MLModelFactory(name="user-segments", is_active=True)
    for _ in range(3):
        SegmentFactory(model=segments).snapshots.create(day="2026-01-01", size=1, share=0.1)
    impact = MLModelFactory(name="feature-impact-retention", kind="feature_impact",
                            primary_metric="auc", is_active=True)  # fmt: skip
    state = MLModelFactory(name="system-states", kind="anomaly", primary_metric="auc",
                           is_active=True)  # fmt: skip
    for i in range(3):
        FeatureImpact.objects.create(
            model=impact, outcome="retention", feature=f"f{i}", adoption=0.5, support=10,
            odds_ratio=1.5, ci_low=1.1, ci_high=2.0, p_value=0.01, q_value=0.02,
            success_rate_used=0.6, importance=0.01, importance_std=0.001,
        )  # fmt: skip
        StatePattern.objects.create(
            model=state, label=i, description="d", signature={"cpu": 3.0}, episodes=[],
            episode_count=2, first_seen=timezone.now(), last_seen=timezone.now(),
        )  # fmt: skip


def test_result_listings_never_read_the_models_artefact_bytes(client_with_role):
    """Each segment, impact row and pattern joins its model; the join used to carry the
    model's whole artefact (a state forest is ~0.6 MB) once per row listed."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _results_with_models()
    client = client_with_role("viewer")
    for path in ["segments", "segments?current=true", "feature-impact", "patterns", "status"]:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"{BASE}/{path}").status_code == 200
        assert not _selects_artefacts(ctx.captured_queries), path


def test_admin_result_pages_never_read_the_models_artefact_bytes(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    _results_with_models()
    for name in ["segment", "segmentsnapshot", "featureimpact", "statepattern", "mlmodel"]:
        with CaptureQueriesContext(connection) as ctx:
            response = admin_client.get(reverse(f"admin:insights_{name}_changelist"))
        assert response.status_code == 200
        assert not _selects_artefacts(ctx.captured_queries), name
    model = MLModel.objects.get(name="user-segments")
    url = reverse("admin:insights_segment_changelist") + f"?model__id__exact={model.pk}"
    response = admin_client.get(url)
    assert response.status_code == 200 and str(model) in response.content.decode()

"""No list endpoint of the API runs more SQL queries as it returns more rows (no N+1).

The API twin of ``test_admin_queries``: every GET list operation of the OpenAPI schema
(a path without a path parameter whose answer is a page or a list) is requested with a few
rows of its model and with many, all on one page, and must run exactly as many queries both
times. Operations come from the schema, so a new list endpoint is measured without anyone
adding a line; one that lists no model rows is skipped with its reason in ``NOT_MODEL_LISTS``.

Rows are built from the model's fields by the admin test's ``RowMaker`` (every foreign key
filled, each row with parents of its own). Rows the session's demo world may have left in a
table are counted once in both measurements, so the test checks that the page grew by the
rows made here and that all of them fit on it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import resolve
from django.utils import timezone

from anomalies.models import Anomaly, RootCauseCandidate
from insights.models import FeatureImpact, MLModel, Segment, SegmentSnapshot, StatePattern
from tests.phase3.test_admin_queries import LARGE, SMALL, RowMaker, _assert_same_count
from tests.schema import openapi

API_PREFIX = "/admin/api/phase3/"
# The largest page (phase3.pagination): rows other tests' session fixtures left (the demo
# world's 40 series on PostgreSQL) plus ours must fit on one page for both measurements.
PAGE = {"limit": 1000}

# GET operations without a path parameter that answer with something other than rows of one
# model: each is named with why it is not measured here.
NOT_MODEL_LISTS = {
    "": "the API root: links and the route list, no database",
    "analytics/predictions/": "forecast points computed on the fly, not model rows",
    "anomaly/detect/": "a report over anomalies; measured by the anomaly test below",
    "anomaly/inhibition-rules/suggestions/": (
        "a report over root-cause links; its queries are counted in test_dependency_mining"
    ),
    "anomaly/layer-rules/coverage/": (
        "a report per metric name over series; its answer is one query of series and one "
        "of rules (test_signal_layer_rules)"
    ),
    "insights/status/": "a summary object of the insights system",
    "optimization/analyze/": "an analysis computed from request logs, not model rows",
    "overview/": "a summary object across the systems",
    "personalization/status/": "a summary object of the personalization system",
    "scaling/evaluate/": "an evaluation of one resource, not a list",
    "scaling/status/": "a summary object of the scaling system",
}


def _is_list(operation: dict) -> bool:
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return body.get("type") == "array" or body.get("$ref", "").startswith(
        "#/components/schemas/Paginated"
    )


def _list_operations() -> list[str]:
    return sorted(
        path.removeprefix(API_PREFIX)
        for path, item in openapi()["paths"].items()
        if path.startswith(API_PREFIX) and "{" not in path and "get" in item
    )


LIST_OPERATIONS = [p for p in _list_operations() if p not in NOT_MODEL_LISTS]


def _model(path: str):
    """The model a list view returns: its ``queryset``, else its serializer's ``Meta.model``."""
    view = resolve(API_PREFIX + path).func
    cls = getattr(view, "cls", None) or view.view_class
    if getattr(cls, "queryset", None) is not None:
        return cls.queryset.model
    return cls.serializer_class.Meta.model


def _with_causes(maker: RowMaker, anomaly: Anomaly) -> None:
    """An anomaly's root causes are listed with it: each anomaly gets two."""
    for rank in (1, 2):
        maker.make(RootCauseCandidate, anomaly=anomaly, cause_anomaly=None, rank=rank)


def _with_snapshots(maker: RowMaker, segment: Segment) -> None:
    """A segment's daily snapshots are listed with it: each segment gets two."""
    for _ in range(2):
        maker.make(SegmentSnapshot, segment=segment)


# Rows listed together with a model's rows (nested lists of its serializer), made with each.
CHILDREN = {Anomaly: _with_causes, Segment: _with_snapshots}


def _of_an_active_model(maker: RowMaker) -> dict:
    return {"model": maker.make(MLModel, is_active=True)}


# Values a list shows a row only with (its default filter), given to each row made.
GIVEN = {FeatureImpact: _of_an_active_model, StatePattern: _of_an_active_model}


def _get(client, url: str, params: dict) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    return response.json(), [q["sql"] for q in captured.captured_queries]


@pytest.fixture
def admin_api(client_with_role):
    return client_with_role("admin")


def test_every_get_without_a_path_parameter_is_a_list_or_skipped_with_a_reason():
    operations = _list_operations()
    assert set(NOT_MODEL_LISTS) <= set(operations), "a skipped operation is gone: drop it"
    schema = openapi()["paths"]
    for path in operations:
        listed = _is_list(schema[API_PREFIX + path]["get"])
        assert listed != (path in NOT_MODEL_LISTS), (
            f"{path}: {'a list, measure it' if listed else 'not a list: skip it with a reason'}"
        )


@pytest.mark.django_db
@pytest.mark.parametrize("path", LIST_OPERATIONS)
def test_list_queries_do_not_grow_with_rows(path, admin_api):
    model = _model(path)
    url = API_PREFIX + path
    maker = RowMaker()
    given = GIVEN.get(model, lambda maker: {})
    children = CHILDREN.get(model, lambda maker, row: None)

    def make(count: int) -> None:
        for _ in range(count):
            children(maker, maker.make(model, **given(maker)))

    make(SMALL)
    admin_api.get(url, PAGE)  # warm-up: process-wide caches are not the small page's cost
    small_page, small = _get(admin_api, url, PAGE)
    make(LARGE - SMALL)
    large_page, large = _get(admin_api, url, PAGE)

    grew = large_page["count"] - small_page["count"]
    assert grew == LARGE - SMALL, f"{path} lists {grew} of the {LARGE - SMALL} rows added"
    assert len(large_page["results"]) == large_page["count"], f"{path}: rows beyond one page"
    _assert_same_count(small, large, f"GET {path}")


@pytest.mark.django_db
def test_anomaly_detect_queries_do_not_grow_with_anomalies(admin_api):
    """``anomaly/detect`` lists recent anomalies with their root causes."""
    url = API_PREFIX + "anomaly/detect/"
    # Only the anomalies made here: the window starts after any demo anomaly ended.
    params = {"limit": 50, "since": (timezone.now() - timedelta(minutes=5)).isoformat()}
    maker = RowMaker()

    def make(count: int) -> None:
        for _ in range(count):
            anomaly = maker.make(Anomaly, started_at=timezone.now(), ended_at=None)
            _with_causes(maker, anomaly)

    make(SMALL)
    admin_api.get(url, params)
    small_report, small = _get(admin_api, url, params)
    make(LARGE - SMALL)
    large_report, large = _get(admin_api, url, params)

    assert large_report["count"] - small_report["count"] == LARGE - SMALL
    _assert_same_count(small, large, "GET anomaly/detect")

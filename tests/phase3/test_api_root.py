"""The API's root and unknown paths answer in JSON, never with the admin's login redirect."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

API = "/admin/api/phase3/"


@pytest.mark.django_db
def test_the_root_lists_the_routes_for_a_viewer(client_with_role):
    response = client_with_role("viewer").get(API)
    assert response.status_code == 200
    body = response.json()
    assert body["schema"].endswith(f"{API}schema")
    endpoints = body["endpoints"]
    assert f"{API}overview/" in endpoints
    assert f"{API}anomaly/anomalies/{{pk}}/" in endpoints
    assert f"{API}anomaly/detect/" in endpoints
    assert not any("unknown" in e for e in endpoints)
    assert API not in endpoints


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["nothing", "anomaly/anomaly", "overview/extra/deep"])
def test_an_unknown_path_is_a_json_404(client_with_role, method, path):
    response = getattr(client_with_role("operator"), method)(f"{API}{path}", {}, format="json")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert f"{API}{path}" in response.json()["detail"]


@pytest.mark.django_db
def test_a_viewer_reads_404_and_writes_403_on_an_unknown_path(client_with_role):
    client = client_with_role("viewer")
    assert client.get(f"{API}nothing").status_code == 404
    assert client.post(f"{API}nothing", {}, format="json").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["", "nothing"])
def test_without_a_key_the_api_says_401_not_302(path):
    response = APIClient().get(f"{API}{path}")
    assert response.status_code == 401


@pytest.mark.django_db
def test_known_routes_still_win_over_the_catch_all(client_with_role):
    client = client_with_role("viewer")
    assert client.get(f"{API}overview").status_code == 200
    assert client.get(f"{API}anomaly/anomalies/999999").status_code == 404
    assert "detail" in client.get(f"{API}anomaly/anomalies/999999").json()
    assert client.get(f"{API}anomaly/anomalies").status_code == 200


@pytest.mark.django_db
def test_the_admin_keeps_its_own_pages(client):
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/nothing/").status_code == 302

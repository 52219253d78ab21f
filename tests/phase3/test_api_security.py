"""Deny by default, proven over every URL under /admin/api/phase3/ found in the resolver.

New endpoints are covered here without anyone adding a line.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from rest_framework.test import APIClient

from phase3.keys import api_key_revoke
from phase3.models import ROLE_RANK, ApiKey, Role

API_PREFIX = "/admin/api/phase3/"
BELOW = {Role.OPERATOR: Role.VIEWER, Role.ADMIN: Role.OPERATOR}


def _concrete(pattern_text: str) -> str:
    text = pattern_text.replace("^", "").replace("$", "").replace("\\Z", "")
    text = re.sub(r"\(\?P<[^>]+>[^)]*\)", "1", text)  # regex groups
    text = re.sub(r"<(?:\w+:)?\w+>", "1", text)  # path converters
    return text.replace("/?", "/").replace("\\", "")


def _walk(patterns, prefix=""):
    for entry in patterns:
        here = prefix + _concrete(str(entry.pattern))
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, here)
        elif isinstance(entry, URLPattern):
            yield "/" + here, entry


def api_endpoints() -> list[tuple[str, object]]:
    found = {}
    for url, entry in _walk(get_resolver().url_patterns):
        if url.startswith(API_PREFIX) and url not in found:
            try:
                match = resolve(url)
            except Exception:
                continue
            if match.func is entry.callback:
                found[url] = entry.callback
    return sorted(found.items())


ENDPOINTS = api_endpoints()
IDS = [url for url, _ in ENDPOINTS]


def _methods(callback) -> dict[str, str | None]:
    """HTTP method -> viewset action (None for plain API views)."""
    actions = getattr(callback, "actions", None)
    if actions:
        return {m.upper(): a for m, a in actions.items()}
    view_cls = callback.view_class
    return {
        m.upper(): None for m in ("get", "post", "put", "patch", "delete") if hasattr(view_cls, m)
    }


def _needed(callback, method: str, action: str | None) -> str:
    cls = getattr(callback, "cls", None) or callback.view_class
    roles = getattr(cls, "action_roles", None) or {}
    if action and action in roles:
        return roles[action]
    if method in ("GET", "HEAD", "OPTIONS"):
        return Role.VIEWER
    return getattr(cls, "write_role", Role.OPERATOR)


def _call(client: APIClient, method: str, url: str):
    return getattr(client, method.lower())(url, data={}, format="json")


def test_the_walk_finds_the_api():
    urls = set(IDS)
    assert f"{API_PREFIX}overview/" in urls
    assert any(u.startswith(f"{API_PREFIX}keys") for u in urls)
    assert len(urls) >= 5


@pytest.mark.django_db
@pytest.mark.parametrize("url,callback", ENDPOINTS, ids=IDS)
def test_every_endpoint_denies_missing_and_bad_keys(url, callback, api_key_factory):
    for method in _methods(callback):
        assert _call(APIClient(), method, url).status_code == 401, (method, "no key")
        bad = APIClient()
        bad.credentials(HTTP_X_ADMIN_KEY="p3k_000000000000.not-a-secret")
        assert _call(bad, method, url).status_code == 401, (method, "bad key")


@pytest.mark.django_db
@pytest.mark.parametrize("url,callback", ENDPOINTS, ids=IDS)
def test_every_endpoint_denies_revoked_and_expired_keys(url, callback, api_key_factory):
    revoked, raw_revoked = api_key_factory(Role.ADMIN)
    api_key_revoke(api_key=revoked)
    expired, raw_expired = api_key_factory(Role.ADMIN)
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    method = next(iter(_methods(callback)))
    for raw in (raw_revoked, raw_expired):
        client = APIClient()
        client.credentials(HTTP_X_ADMIN_KEY=raw)
        assert _call(client, method, url).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("url,callback", ENDPOINTS, ids=IDS)
def test_every_endpoint_denies_a_role_too_low(url, callback, client_with_role):
    checked = 0
    for method, action in _methods(callback).items():
        needed = _needed(callback, method, action)
        if needed == Role.VIEWER:
            continue
        response = _call(client_with_role(BELOW[needed]), method, url)
        assert response.status_code == 403, (method, action, needed, response.status_code)
        checked += 1
    if "POST" in _methods(callback):
        assert checked  # a write must never be open to viewers


@pytest.mark.django_db
def test_a_viewer_reads_the_overview(client_with_role):
    response = client_with_role(Role.VIEWER).get(f"{API_PREFIX}overview")
    assert response.status_code == 200
    assert "telemetry" in response.json() and "jobs" in response.json()


@pytest.mark.django_db
def test_paths_answer_with_and_without_slash_without_redirect(client_with_role):
    client = client_with_role(Role.VIEWER)
    assert client.get(f"{API_PREFIX}overview").status_code == 200
    assert client.get(f"{API_PREFIX}overview/").status_code == 200


@pytest.mark.django_db
def test_failed_attempts_are_throttled_per_client_address(api_key_factory):
    _, good = api_key_factory(Role.VIEWER)
    attacker = APIClient(REMOTE_ADDR="10.9.9.9")
    attacker.credentials(HTTP_X_ADMIN_KEY="p3k_000000000000.guess")
    codes = [attacker.get(f"{API_PREFIX}overview").status_code for _ in range(25)]
    assert codes[0] == 401 and codes[-1] == 429
    other = APIClient(REMOTE_ADDR="10.9.9.10")
    other.credentials(HTTP_X_ADMIN_KEY=good)
    assert other.get(f"{API_PREFIX}overview").status_code == 200


@pytest.mark.django_db
def test_roles_rank_in_order():
    assert ROLE_RANK[Role.VIEWER] < ROLE_RANK[Role.OPERATOR] < ROLE_RANK[Role.ADMIN]

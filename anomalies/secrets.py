"""Playbook URLs are credentials: shown in full to admins only, masked for everyone else.

A Slack incoming-webhook URL, a PagerDuty routing key in a query string or a webhook
token in a path lets whoever reads it post to the on-call's channel. Viewers and
operators need to know *where* a page goes (the host), not how to send one there, so the
API and the admin show them `https://hooks.slack.com/…`, in the playbook and in every
execution's error or result that quotes it (`requests` errors repeat the path). E-mail
addresses and task names are not credentials and are shown as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from phase3.models import Role
from phase3.permissions import session_role

MASK = "…"
_CACHE = "_phase3_may_see_secrets"
_URL = re.compile(r"https?://[^\s'\"<>()\[\]{},]+", re.IGNORECASE)


def may_see_secrets(request: Any) -> bool:
    """Whether the caller holds the admin role (an API key's role, or a staff session's).

    Resolved as the API's permission check resolves it (`phase3.permissions`), so the two
    never disagree; no request (a serializer used outside a view) means no. The answer is
    kept on the request: serializers ask once per listed row, and a staff session's role
    costs a query of its groups.
    """
    if request is None:
        return False
    cached = getattr(request, _CACHE, None)
    if cached is None:
        user = getattr(request, "user", None)
        cached = bool(
            user is not None
            and getattr(user, "is_authenticated", False)
            and (getattr(user, "role", None) or session_role(user)) == Role.ADMIN
        )
        setattr(request, _CACHE, cached)
    return cached


def mask_url(url: str) -> str:
    """`scheme://host[:port]/…`: where it goes, without the path, query or user:password."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/{MASK}"


def mask_text(text: str, urls: Iterable[str] = ()) -> str:
    """`text` with every http(s) URL masked, and the path of each of `urls` wherever it
    appears on its own (`requests` says "Max retries exceeded with url: /services/T0/…")."""
    if not text:
        return text
    for url in urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        rest = parts.path + (f"?{parts.query}" if parts.query else "")
        if url:
            text = text.replace(url, mask_url(url))
        if len(rest) > 1:
            text = text.replace(rest, f"/{MASK}")
    return _URL.sub(lambda m: mask_url(m.group()), text)


def mask_value(value: Any, urls: Iterable[str] = ()) -> Any:
    """`mask_text` applied to every string inside a JSON value (an execution's result)."""
    urls = list(urls)
    if isinstance(value, str):
        return mask_text(value, urls)
    if isinstance(value, dict):
        return {k: mask_value(v, urls) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v, urls) for v in value]
    return value

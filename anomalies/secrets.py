"""Playbook URLs are credentials: shown in full to admins only, masked for everyone else.

A Slack incoming-webhook URL, a PagerDuty routing key (a target of its own, or in a query
string) or a webhook token in a path lets whoever reads it post to the on-call's channel. Viewers and
operators need to know *where* a page goes (the host), not how to send one there, so the
API and the admin show them `https://hooks.slack.com/…`, in the playbook and in every
execution's error or result that quotes it (`requests` errors repeat the path). E-mail
addresses and task names are not credentials and are shown as they are.

A task playbook's `arguments` (and the task's kwargs an execution records) are scrubbed
as Sentry scrubs event data: the value of any key that looks like a secret (`password`,
`api_key`, `dsn`, `auth`, ... anywhere in the name, case-insensitive, at any depth) is
`[Filtered]`, so is a string that itself says it holds one ("Bearer ..."), and every URL
(of any scheme: `postgres://user:pw@db/x`) is cut to `scheme://host/…`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from phase3.models import Role
from phase3.permissions import session_role

from .validation import ALERT_ACTIONS, URL_ACTIONS

MASK = "…"
# What replaces a secret value; Sentry's word for it, so it reads as scrubbed, not empty.
FILTERED = "[Filtered]"
_CACHE = "_phase3_may_see_secrets"
# Any scheme with an authority: a DSN or a database URL carries user:password@ too.
_URL = re.compile(r"[a-z][a-z0-9+.\-]*://[^\s'\"<>()\[\]{},]+", re.IGNORECASE)
# A key naming a secret: Sentry's default sensitive fields (password, secret, passwd,
# api_key, apikey, auth, credentials, mysql_pwd, privatekey, private_key, token, bearer)
# plus `key`, `dsn`, `pwd`, `cookie`, `session` and `signature`, found anywhere in the
# name as Sentry does, so `X-Api-Key`, `slackToken` and `db_password` are caught. It also
# catches `monkey` or `author`: shown as [Filtered] below the admin role, which costs a
# viewer little; a missed secret costs the on-call's integrations.
_SECRET_KEY = re.compile(
    r"pass(word|wd)|pwd|secret|token|bearer|key|auth|credential|dsn|cookie|session|signature",
    re.IGNORECASE,
)
# A value that says it is a secret whatever its key ("Bearer abc", "password=hunter2").
_SECRET_VALUE = re.compile(
    r"\bbearer\s|pass(word|wd)|secret|api_?key|private_?key|token[=:]", re.IGNORECASE
)


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


def mask_target(action: str, target: str) -> str:
    """A playbook's target as shown below the admin role: a URL cut to its host, a routing
    key to its last four characters (enough to tell two integrations apart); e-mail
    addresses and task names as they are."""
    if action in URL_ACTIONS:
        return mask_url(target)
    if action in ALERT_ACTIONS:
        return f"{MASK}{target.strip()[-4:]}"
    return target


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
    """A JSON value (a task playbook's arguments, an execution's result) as shown below
    the admin role: `[Filtered]` for the value of every key that looks like a secret and
    for a string that says it holds one, `mask_text` on every other string, at any depth.
    """
    urls = list(urls)
    if isinstance(value, str):
        # URLs first: a token in a URL's query goes with the path, and the host stays.
        value = mask_text(value, urls)
        return FILTERED if _SECRET_VALUE.search(value) else value
    if isinstance(value, dict):
        return {
            k: FILTERED if _SECRET_KEY.search(str(k)) else mask_value(v, urls)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_value(v, urls) for v in value]
    return value

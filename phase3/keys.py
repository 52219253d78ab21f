"""Creating, checking and revoking API keys.

The secret is 32 random bytes: with that much entropy a single SHA-256 is the right
hash (a slow password hash would only slow every request down). Keys are found by
their public prefix and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from .models import ApiKey, Role

KEY_TYPE = "p3k"  # a typed prefix makes leaked keys easy to grep for, as Sentry's tokens do
_PREFIX = re.compile(rf"{KEY_TYPE}_[0-9a-f]{{12}}")


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw: str  # shown once, never stored


def hash_secret(secret: str) -> str:
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(
    *, name: str, role: str, expires_in_days: int | None = None, created_by=None
) -> IssuedKey:
    if role not in Role.values:
        raise ValueError(f"role must be one of {', '.join(Role.values)}")
    if not name.strip():
        raise ValueError("name must not be empty")
    if expires_in_days is not None and expires_in_days <= 0:
        raise ValueError("expires-in-days must be a positive number of days")
    prefix = f"{KEY_TYPE}_{secrets.token_hex(6)}"
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name.strip(),
        role=role,
        prefix=prefix,
        secret_hash=hash_secret(secret),
        expires_at=timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None,
        created_by=created_by,
    )
    return IssuedKey(api_key=key, raw=f"{prefix}.{secret}")


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_check(raw: str) -> ApiKey | None:
    """Return the active key for ``raw`` or None; never says which part was wrong."""
    prefix, sep, secret = raw.strip().partition(".")
    if not sep or not secret or len(raw) > 200 or not _PREFIX.fullmatch(prefix):
        return None  # also keeps a NUL out of the query (PostgreSQL refuses one: a 500)
    key = ApiKey.objects.filter(prefix=prefix).first()
    expected = key.secret_hash if key else hash_secret("decoy")
    if not hmac.compare_digest(expected, hash_secret(secret)) or key is None:
        return None
    if not key.is_active:
        return None
    _touch(key)
    return key


def _touch(key: ApiKey) -> None:
    """Write last_used_at at most once per interval per key, so reads don't become writes."""
    interval = settings.PHASE3_API_KEY_TOUCH_INTERVAL
    if cache.add(f"apikey-touch:{key.pk}", 1, timeout=int(interval.total_seconds())):
        now = timezone.now()
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now

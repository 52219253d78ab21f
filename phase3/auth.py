"""``X-Admin-Key`` authentication with a brute-force throttle on failures per client address."""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.throttling import SimpleRateThrottle

from .keys import api_key_check


class FailedAuthThrottle(SimpleRateThrottle):
    """Counts only failed attempts: a client with a good key is never slowed down.

    The client is its address as DRF's ``get_ident`` sees it: ``X-Forwarded-For`` is
    trusted only through ``PHASE3_NUM_PROXIES`` proxies (``NUM_PROXIES``, 0 by default), so
    a client cannot dodge the count with a made-up header.
    """

    scope = "failed_auth"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def blocked(self, request) -> bool:
        self.key = self.get_cache_key(request, None)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) >= self.num_requests

    def record_failure(self, request) -> None:
        if not hasattr(self, "history"):
            self.blocked(request)
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)


class KeyPrincipal:
    """The user-like object DRF sees for a key: authenticated, not staff, carrying its role."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, api_key) -> None:
        self.api_key = api_key
        self.role = api_key.role
        self.pk = None
        self.username = f"key:{api_key.prefix}"

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        raw = request.META.get(settings.PHASE3_API_KEY_HEADER)
        if raw is None:
            return None
        # The key is checked first: a good key is never throttled, even behind an address
        # (a NAT, a load balancer) that a broken script is hammering with a bad one.
        # Secrets are 256 bits, so the throttle is about load and noise, not guessing.
        key = api_key_check(raw)
        if key is not None:
            return KeyPrincipal(key), key
        throttle = FailedAuthThrottle()
        if throttle.blocked(request):
            raise exceptions.Throttled(detail="Too many failed authentication attempts.")
        throttle.record_failure(request)
        raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")

    def authenticate_header(self, request) -> str:
        # A WWW-Authenticate value makes DRF answer 401 (not 403) to unauthenticated calls.
        return 'X-Admin-Key realm="phase3"'

"""Warnings about a deployment that runs with DEBUG where others can reach it.

DEBUG error pages show a traceback with the settings, and with them the broker's and the
cache's URLs (passwords included), to whoever triggers an error. `make run` turns DEBUG
on (``DJANGO_ENV=development``) for a newcomer on their own machine; the same settings on
an address others reach are a leak. `runstack` says so when it binds such an address and
the overview when it is read through such a name: a warning, not a refusal, since a
developer may mean it (a container, a VM on the desk).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings

FIX = "set DJANGO_ENV=production (or leave DJANGO_ENV unset: DEBUG off, local names only)"


def is_local_host(host: str) -> bool:
    """Whether `host` (a name or address, with or without a port) is this machine only."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8000
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:  # 127.0.0.1:8000, localhost:8000
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def bind_address_host(addr: str) -> str:
    """The host part of a runserver address: ``8000`` and ``:8000`` bind 127.0.0.1."""
    addr = addr.strip()
    if addr.removeprefix(":").isdigit():
        return "127.0.0.1"
    if addr.startswith("["):
        return addr[1 : addr.find("]")] if "]" in addr else addr[1:]
    return addr.rsplit(":", 1)[0] if addr.count(":") == 1 else addr


def debug_exposure_warning(*, host: str, how: str = "is reached as") -> str | None:
    """A warning when DEBUG is on and `host` is not this machine only, else None."""
    if not settings.DEBUG or is_local_host(host):
        return None
    return (
        f"DEBUG is on and this server {how} {host}: error pages show anyone tracebacks "
        f"with the settings, broker and cache URLs included; {FIX}."
    )


def deployment_summary(*, host: str) -> dict:
    """The overview's ``deployment`` part: the mode, DEBUG, and what to fix."""
    warning = debug_exposure_warning(host=host)
    return {
        "environment": settings.DJANGO_ENV or "unset",
        "debug": settings.DEBUG,
        "warnings": [warning] if warning else [],
    }

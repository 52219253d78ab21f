"""Who made an API call, for the records the systems keep of operator actions."""

from __future__ import annotations

from rest_framework.request import Request


def request_actor(request: Request) -> str:
    """The admin user's name, or the API key's (its ``str``) for a call made with a key.

    Acknowledgements, silences and ships record it, so an audit reads the same name in
    every system whichever way the operator came in.
    """
    user = request.user
    return getattr(user, "username", "") or str(getattr(request, "auth", "") or "")

"""Read back the valid values an invalid-choice 400 names (``telemetry.serializers``).

Tests compare them with the model's or module's own choices rather than with a copied
list, so a new choice does not break them and a dropped one from the message does.
"""

from __future__ import annotations

import orjson


def listed_choices(message: str) -> list[str]:
    """The accepted values a ``"x" is not a valid choice. Valid choices: ...`` message
    lists, as the strings a client would send (quotes removed)."""
    _, found, listed = message.partition("Valid choices: ")
    assert found, f"no valid choices in {message!r}"
    return [
        orjson.loads(item) if item.startswith('"') else item
        for item in listed.removesuffix(".").split(", ")
    ]


def assert_names_valid_choices(response, field: str, sent: str, valid) -> None:
    """A 400 on ``field`` that echoes what was sent and lists exactly ``valid``."""
    assert response.status_code == 400, response.content
    message = response.json()[field][0]
    assert f'"{sent}"' in message
    assert listed_choices(message) == [str(v) for v in valid]

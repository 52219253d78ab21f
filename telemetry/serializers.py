"""DRF building blocks every app's ``api.py`` uses instead of DRF's own.

DRF answers a bad choice with ``{"horizon": ["\\"7d\\" is not a valid choice."]}``: the
client learns what it sent, not what it may send, and has to read the schema or the
source to recover. Like Datadog's or Sentry's APIs, ours name the accepted values in the
400 itself. The fields below only change that error message; parsing, output and the
OpenAPI enums (drf-spectacular maps any ``ChoiceField`` subclass the same way) are DRF's.

- :class:`ChoiceField`, :class:`MultipleChoiceField` for explicit fields;
- :class:`ModelSerializer` builds the field of every model field with ``choices`` as
  :class:`ChoiceField` (DRF's ``serializer_choice_field`` hook), so model-backed
  serializers list the valid values too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import orjson
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

#: choices named in one error; an enum of hundreds would bury the message itself
MAX_LISTED_CHOICES = 20


def valid_choices_text(
    choice_strings_to_values: Mapping[str, Any], *, limit: int = MAX_LISTED_CHOICES
) -> str:
    """The accepted inputs as a client types them: strings quoted (so an empty-string
    choice shows as ``""``), numbers bare; cut to ``limit`` with a count of the rest so
    the message stays readable however long the enum."""
    shown = [
        text if _is_number(value) else orjson.dumps(text).decode()
        for text, value in list(choice_strings_to_values.items())[:limit]
    ]
    rest = len(choice_strings_to_values) - len(shown)
    if rest > 0:
        shown.append(f"… ({rest} more)")
    return ", ".join(shown)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _ValidChoicesMixin:
    """Adds ``{choices}`` to the ``invalid_choice`` message.

    Computed at failure time from ``choice_strings_to_values``, so choices set after
    construction (``field.choices = ...``) are the ones listed; a caller's own
    ``error_messages={"invalid_choice": ...}`` still wins and may use ``{choices}``.
    """

    default_error_messages = {
        "invalid_choice": _('"{input}" is not a valid choice. Valid choices: {choices}.')
    }
    choice_strings_to_values: dict[str, Any]

    def fail(self, key: str, **kwargs: Any) -> NoReturn:
        if key == "invalid_choice":
            kwargs.setdefault("choices", valid_choices_text(self.choice_strings_to_values))
        super().fail(key, **kwargs)  # type: ignore[misc]
        raise AssertionError("unreachable: Field.fail raises")  # pragma: no cover


class ChoiceField(_ValidChoicesMixin, serializers.ChoiceField):
    """DRF's ``ChoiceField`` whose 400 lists the valid values."""


class MultipleChoiceField(_ValidChoicesMixin, serializers.MultipleChoiceField):
    """DRF's ``MultipleChoiceField`` whose 400 lists the valid values (for each bad item)."""


# DRF's ModelSerializer that builds model fields with ``choices`` as our ChoiceField, so a
# bad ``status`` in a POST body names the valid statuses. A comment, not a docstring:
# drf-spectacular would publish an inherited docstring as every serializer's description.
class ModelSerializer(serializers.ModelSerializer):
    serializer_choice_field = ChoiceField

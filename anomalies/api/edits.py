"""What every editable resource shares: admins edit, and a partial update is checked
with the fields it leaves as they are."""

from __future__ import annotations

ADMIN_EDITS = {"create": "admin", "update": "admin", "partial_update": "admin", "destroy": "admin"}


def merged_fields(attrs: dict, instance, defaults: dict) -> dict:
    """The values a create or (partial) update would leave on the row, for the checks."""
    return {k: attrs.get(k, getattr(instance, k, default)) for k, default in defaults.items()}

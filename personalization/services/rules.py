"""Rules: the default set, and cache invalidation whenever configuration changes."""

from __future__ import annotations

from django.db import transaction

from ..defaults import DEFAULT_RULES
from ..models import PersonalizationRule
from .config import config_invalidate


def default_rules_ensure() -> dict:
    """Create the default rules that are missing (by key); never overwrite an edit."""
    created = 0
    with transaction.atomic():
        for spec in DEFAULT_RULES:
            _, was_created = PersonalizationRule.objects.get_or_create(
                key=spec["key"], defaults={k: v for k, v in spec.items() if k != "key"}
            )
            created += int(was_created)
        if created:
            config_invalidate()
    return {"created": created, "defaults": len(DEFAULT_RULES)}


def rules_set_enabled(*, rule_ids: list[int], enabled: bool) -> int:
    """Enable or disable rules in one write (admin action)."""
    with transaction.atomic():
        count = PersonalizationRule.objects.filter(pk__in=rule_ids).update(enabled=enabled)
        config_invalidate()
    return count

"""The default "Database connections" rule sizes the pool by connections in use per unit.

It tracked the share of the server's fixed maximum, which does not fall as the pool
grows (see scaling/defaults.py, ``DB_RULE_BEFORE``). Only a row still exactly as shipped
is rewritten: an operator who edited it owns it.
"""

from django.db import migrations

RULE = "Database connections"
RESOURCE = "database-connections"


def _default_spec() -> dict:
    from scaling.defaults import DEFAULT_RULES

    spec = next(r for r in DEFAULT_RULES if r["resource"] == RESOURCE and r["name"] == RULE)
    return {k: v for k, v in spec.items() if k not in ("resource", "name")}


def rewrite(apps, schema_editor):
    from scaling.defaults import DB_RULE_BEFORE

    Rule = apps.get_model("scaling", "ScalingRule")
    Rule.objects.filter(resource__name=RESOURCE, name=RULE, **DB_RULE_BEFORE).update(
        **_default_spec()
    )


def restore(apps, schema_editor):
    from scaling.defaults import DB_RULE_BEFORE

    Rule = apps.get_model("scaling", "ScalingRule")
    Rule.objects.filter(resource__name=RESOURCE, name=RULE, **_default_spec()).update(
        **DB_RULE_BEFORE
    )


class Migration(migrations.Migration):
    dependencies = [("scaling", "0003_decision_executing_status")]

    operations = [migrations.RunPython(rewrite, restore)]

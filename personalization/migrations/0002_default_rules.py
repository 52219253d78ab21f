"""Create the four default personalization rules (editable in the admin afterwards)."""

from django.db import migrations

from personalization.defaults import DEFAULT_RULES


def create_defaults(apps, schema_editor):
    Rule = apps.get_model("personalization", "PersonalizationRule")
    for spec in DEFAULT_RULES:
        Rule.objects.get_or_create(
            key=spec["key"], defaults={k: v for k, v in spec.items() if k != "key"}
        )


def remove_defaults(apps, schema_editor):
    Rule = apps.get_model("personalization", "PersonalizationRule")
    Rule.objects.filter(key__in=[spec["key"] for spec in DEFAULT_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("personalization", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]

"""The default resources and five rules (CPU, memory, DB connections, API quota, Celery backlog).

Adds what is missing and never overwrites an operator's edit; see scaling/defaults.py.
"""

from django.db import migrations


def create_defaults(apps, schema_editor):
    from scaling.defaults import DEFAULT_RESOURCES, DEFAULT_RULES

    Resource = apps.get_model("scaling", "ScalableResource")
    Rule = apps.get_model("scaling", "ScalingRule")
    for spec in DEFAULT_RESOURCES:
        Resource.objects.get_or_create(name=spec["name"], defaults=dict(spec))
    for spec in DEFAULT_RULES:
        spec = dict(spec)
        resource = Resource.objects.get(name=spec.pop("resource"))
        Rule.objects.get_or_create(resource=resource, name=spec["name"], defaults=spec)


class Migration(migrations.Migration):
    dependencies = [("scaling", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]

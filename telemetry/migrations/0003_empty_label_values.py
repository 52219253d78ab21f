"""Series stored with an empty label value (``env=""``) take the key they have now.

Since empty label values count as no label (Prometheus' rule, ``telemetry.labels``),
``series_get("cpu", {"env": ""})`` and ingestion look up ``cpu{}``; a series stored
earlier as ``cpu{env=}`` would no longer be found, and new samples would start a second
series beside it. Each such series is rewritten in place to its normalised labels, so its
history stays with it. Where the normalised series exists too (both ``cpu{}`` and
``cpu{env=}`` were stored), the two are not merged (their samples may overlap with other
values, and other apps' rows point at both): the old one is left as it is, lookups find
the normalised one, and docs/telemetry.md says how to find and merge the leftovers.
"""

from django.db import migrations

# The rule as it stands in this migration, copied rather than imported: migrations must
# not change when the app's code does.


def _normalise(labels):
    return {k: v for k, v in (labels or {}).items() if v != ""}


def _key(labels):
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def normalise_empty_label_values(apps, schema_editor):
    Series = apps.get_model("telemetry", "Series")
    # an empty value shows in the key as "k=" at the end or before a comma
    stale = Series.objects.filter(labels_key__regex=r"=(,|$)").order_by("pk")
    for series in stale.iterator():
        labels = _normalise(series.labels)
        key = _key(labels)
        if Series.objects.filter(name=series.name, labels_key=key).exists():
            continue  # the normalised series exists: left for an operator (see the docs)
        Series.objects.filter(pk=series.pk).update(labels=labels, labels_key=key)


class Migration(migrations.Migration):
    dependencies = [
        ("telemetry", "0002_rollups"),
    ]

    operations = [
        migrations.RunPython(normalise_empty_label_values, migrations.RunPython.noop),
    ]

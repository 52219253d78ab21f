"""manage.py optimization_evaluate: score the analysis against the demo's ground truth.

The demo world records what it injected (``DemoIncident``: cause series, effect series, time)
and documents an N+1 pattern on ``/api/reports``. This command runs the detectors read-only
and reports, per incident whose cause is a resource, whether the saturation detector linked
that resource to latency and with which lag, whether the N+1 endpoint was found, and which
resources were linked that the ground truth does not name (false positives). Run after
``seed_demo``; it writes nothing.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from optimization.services import analysis_compute
from telemetry.models import DemoIncident

N_PLUS_ONE_ENDPOINT = "/api/reports"


def _family(name: str) -> str:
    """db.connections.active and db.connections.utilization are one resource."""
    return name.rsplit(".", 1)[0]


class Command(BaseCommand):
    help = "Evaluate the detectors against the seeded demo ground truth (reads only)."

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=float, default=24.0)

    def handle(self, *args, hours=24.0, **options):
        incidents = list(DemoIncident.objects.select_related("cause_series"))
        if not incidents:
            raise CommandError("no DemoIncident rows: run `manage.py seed_demo` first")
        result = analysis_compute(window_hours=hours)
        links = result.bottlenecks["saturation"]
        linked = {_family(link["resource"]): link for link in links if link["significant"]}
        resources = {_family(link["resource"]) for link in links}
        found = expected = 0
        for incident in incidents:
            family = _family(incident.cause_series.name)
            if family not in resources:
                continue  # not a saturation resource (queue, error burst): other detectors
            expected += 1
            link = linked.get(family)
            found += bool(link)
            detail = (
                f"linked, lag {link['lag_steps'] * 5} min, latency x"
                f"{link['saturated_latency_ratio']:.2f}"
                if link
                else "MISSED"
            )
            self.stdout.write(f"{incident.name:<28} cause {incident.cause_series}: {detail}")
        truth = {_family(i.cause_series.name) for i in incidents}
        false_links = sorted(set(linked) - truth)
        n_plus_one = {f["endpoint"] for f in result.bottlenecks["n_plus_one"]}
        self.stdout.write(f"saturation causes linked: {found}/{expected}")
        self.stdout.write(f"resources linked without an incident: {false_links or 'none'}")
        self.stdout.write(
            f"N+1 on {N_PLUS_ONE_ENDPOINT}: {'found' if N_PLUS_ONE_ENDPOINT in n_plus_one else 'MISSED'}"
            f"; other N+1 endpoints flagged: {sorted(n_plus_one - {N_PLUS_ONE_ENDPOINT}) or 'none'}"
        )
        if result.health:
            self.stdout.write(f"health score now: {result.health.score:.1f}")
        self.stdout.write(f"recommendations: {len(result.drafts)}")

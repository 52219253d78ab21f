"""Evaluate the scaling rules now: a dry run by default, --execute to act."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scaling import services
from scaling.models import ScalableResource


class Command(BaseCommand):
    help = "Show (or with --execute, apply) what the scaling rules decide now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--resource", action="append", default=None,
                            help="resource name (repeatable); default: all enabled")  # fmt: skip
        parser.add_argument("--execute", action="store_true")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **opts) -> None:
        ids = None
        if opts["resource"]:
            found = dict(ScalableResource.objects.filter(name__in=opts["resource"])
                         .values_list("name", "pk"))  # fmt: skip
            missing = sorted(set(opts["resource"]) - set(found))
            if missing:
                raise CommandError(f"unknown resource(s): {', '.join(missing)}")
            ids = list(found.values())
        evaluations = services.decisions_evaluate(resource_ids=ids, execute=opts["execute"])
        for ev in evaluations:
            item = services.evaluation_json(ev)
            if ev.row is not None:
                item["status"] = ev.row.status
                item["actuator_detail"] = ev.row.actuator_detail
            if opts["json"]:
                self.stdout.write(json.dumps(item, default=str))
            else:
                self.stdout.write(
                    f"{item['resource']}: {item['action']} {item['current_units']}->"
                    f"{item['desired_units']} [{item['status']}] "
                    f"cost/month {item['cost_per_month_delta']:+.2f} | "
                    + "; ".join(item["reasons"])
                )

"""Measure persona accuracy and calibration on users of known kind, without writing anything.

On the demo data the known kinds are ``telemetry.DemoUser``. Half of the labelled
users set the temperature, the other half are measured, exactly as the daily job does.
"""

import json
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from personalization.engine.features import EventArrays, extract_user_features
from personalization.services import personas_fit
from telemetry.models import DemoUser
from telemetry.selectors import events_frame


class Command(BaseCommand):
    help = "Persona accuracy, ECE and Brier score on held-out users of known kind."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=28, help="event window (default 28)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, days: int, json: bool = False, **options) -> None:
        if not 1 <= days <= 365:
            raise CommandError("--days must be between 1 and 365")
        labels = dict(DemoUser.objects.values_list("user_id", "kind"))
        if not labels:
            raise CommandError("no users of known kind (run `manage.py seed_demo` first)")
        now = timezone.now()
        frame = events_frame(start=now - timedelta(days=days), end=now)
        events = EventArrays(frame["user_id"], frame["name"], frame["ts"], frame["session_id"],
                             list(frame["properties"]))  # fmt: skip
        fit = personas_fit(extract_user_features(events, as_of=now.timestamp()), labels=labels)
        if not fit.report:
            raise CommandError(fit.note or "no labelled user has enough data to be measured")
        report = {"users": len(fit.features.user_ids),
                  "classified": sum(p is not None for p in fit.persona),
                  "temperature": fit.model.temperature, **fit.report}  # fmt: skip
        if json:
            self.stdout.write(_json(report))
            return
        for key in ("users", "classified", "labelled_users", "accuracy", "ece", "brier",
                    "ece_uncalibrated", "brier_uncalibrated", "temperature"):  # fmt: skip
            self.stdout.write(f"{key:>20}: {report[key]}")
        self.stdout.write("confusion (rows: true kind, columns: persona):")
        for kind, row in report["confusion"].items():
            self.stdout.write(f"{kind:>20}: {row}")


def _json(report: dict) -> str:
    return json.dumps(report, indent=2, default=float)

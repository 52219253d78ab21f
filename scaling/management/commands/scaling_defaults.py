"""Create the default scaling resources and rules where missing (idempotent)."""

from django.core.management.base import BaseCommand

from scaling import services


class Command(BaseCommand):
    help = "Create the default resources and the five default rules where they are missing."

    def handle(self, *args, **opts) -> None:
        created = services.scaling_defaults_ensure()
        self.stdout.write(f"created {created['resources']} resource(s), {created['rules']} rule(s)")

"""Re-create any of the four default rules that is missing (never overwrites an edit)."""

from django.core.management.base import BaseCommand

from personalization import services


class Command(BaseCommand):
    help = "Create the default personalization rules that are missing."

    def handle(self, *args, **options) -> None:
        self.stdout.write(self.style.SUCCESS(f"default rules: {services.default_rules_ensure()}"))

"""Judge executed decisions whose settle time is over (what the beat job does)."""

from django.core.management.base import BaseCommand

from scaling import services


class Command(BaseCommand):
    help = "Mark executed scaling decisions a success or failure once their settle time is over."

    def handle(self, *args, **opts) -> None:
        self.stdout.write(str(services.outcomes_check()))

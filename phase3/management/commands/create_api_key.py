from django.core.management.base import BaseCommand, CommandError

from phase3.keys import api_key_create
from phase3.models import Role


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument("--quiet", action="store_true", help="print only the key")

    def handle(self, *args, name, role, expires_in_days, quiet, **options):
        try:
            issued = api_key_create(name=name, role=role, expires_in_days=expires_in_days)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if quiet:
            self.stdout.write(issued.raw)
            return
        self.stdout.write(f"API key for {name!r} ({role}); it is shown only now:")
        self.stdout.write(f"  X-Admin-Key: {issued.raw}")

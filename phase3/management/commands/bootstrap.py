"""Everything `make run` needs before the processes start, safe to run on every start."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from phase3.first_runs import schedules_start_never_run
from phase3.keys import api_key_create
from phase3.models import ApiKey


class Command(BaseCommand):
    help = "Sync schedules, seed demo data when empty, create an admin user and an API key."

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true")
        parser.add_argument("--username", default=os.environ.get("PHASE3_ADMIN_USER", "admin"))

    def handle(self, *args, no_demo, username, **options):
        call_command("sync_schedules", stdout=self.stdout)
        if not no_demo:
            call_command("seed_demo", if_empty=True, stdout=self.stdout)
        User = get_user_model()
        lines = []
        if not User.objects.filter(username=username).exists():
            password = os.environ.get("PHASE3_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            lines.append(f"Admin user:  {username} / {password}   (http://127.0.0.1:8000/admin/)")
        else:
            lines.append(f"Admin user:  {username} (exists; password unchanged)")
        if not ApiKey.objects.filter(name="make-run", revoked_at__isnull=True).exists():
            issued = api_key_create(name="make-run", role="admin")
            lines.append(f"API key:     X-Admin-Key: {issued.raw}   (admin role, shown once)")
        else:
            lines.append(
                "API key:     'make-run' exists (create another: manage.py create_api_key)"
            )
        if started := schedules_start_never_run():
            lines.append(
                f"First runs:  {len(started)} schedules that had never run are queued "
                "(personas, forecasts, insights fill in over the next minutes)"
            )
        banner = "=" * 78
        self.stdout.write("\n".join([banner, *lines, banner]))

from django.core.management.base import BaseCommand, CommandError

from phase3.scheduling import schedules_sync


class Command(BaseCommand):
    help = "Write the schedules declared by the apps into django-celery-beat (adds missing ones)."

    def handle(self, *args, **options):
        try:
            result = schedules_sync()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for name in result.created:
            self.stdout.write(f"created: {name}")
        self.stdout.write(f"{len(result.created)} created, {len(result.kept)} left as they are")

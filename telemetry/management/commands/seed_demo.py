from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from telemetry.demo import DemoConfig, demo_totals, seed_demo
from telemetry.models import Series


class Command(BaseCommand):
    help = "Write a realistic, reproducible demo world: metrics, incidents and user events."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=60)
        parser.add_argument("--users", type=int, default=2000)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--step-minutes", type=int, default=5)
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="do nothing when the database already holds telemetry",
        )

    def handle(self, *args, days, users, seed, step_minutes, if_empty, **options):
        if if_empty and Series.objects.exists():
            self.stdout.write("Telemetry already present; demo data not written.")
            return
        config = DemoConfig(days=days, users=users, seed=seed, step_minutes=step_minutes)
        try:
            config.validate()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        samples_total, events_total = demo_totals(config)
        bars = {
            "samples": tqdm(total=samples_total, desc="samples", unit="rows", leave=False),
            "events": tqdm(total=events_total, desc="events ", unit="rows", leave=False),
        }
        result = seed_demo(config, progress=lambda label, n: bars[label].update(n))
        for bar in bars.values():
            bar.close()
        self.stdout.write(
            f"Demo world: {result.series} series, {result.samples} samples, {result.events} events, "
            f"{result.users} users, {result.incidents} incidents in {result.seconds:.1f}s."
        )

"""Run the web server, a Celery worker and beat together; Ctrl-C stops all three."""

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from phase3.deployment import bind_address_host, debug_exposure_warning


class Command(BaseCommand):
    help = "Start web + Celery worker + beat in one terminal (the embedded default stack)."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("PHASE3_ADDR", "127.0.0.1:8000"))
        parser.add_argument("--concurrency", type=int, default=2)

    def handle(self, *args, addr, concurrency, **options):
        warning = debug_exposure_warning(host=bind_address_host(addr), how="listens on")
        if warning:
            self.stderr.write(self.style.WARNING(f"WARNING: {warning}"))
        py = sys.executable
        commands = {
            "web": [py, "manage.py", "runserver", addr, "--noreload"],
            "worker": [
                py,
                "-m",
                "celery",
                "-A",
                "phase3",
                "worker",
                "-l",
                "INFO",
                "--concurrency",
                str(concurrency),
            ],
            "beat": [
                py,
                "-m",
                "celery",
                "-A",
                "phase3",
                "beat",
                "-l",
                "INFO",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
            ],
        }
        procs = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        self.stdout.write(
            f"Running {', '.join(procs)} — open http://{addr}/admin/ ; Ctrl-C stops all."
        )

        def stop(*_):
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.time() + 15
            for proc in procs.values():
                try:
                    proc.wait(max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()

        signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
        dead = []
        try:
            while all(p.poll() is None for p in procs.values()):
                time.sleep(1)
            dead = [n for n, p in procs.items() if p.poll() is not None]
            self.stderr.write(f"{', '.join(dead)} stopped; stopping the rest.")
        except KeyboardInterrupt:
            pass
        finally:
            stop()
        if dead:  # a process that died on its own is a failure a supervisor must see
            raise CommandError(f"{', '.join(dead)} stopped unexpectedly")

from django.apps import AppConfig


class Phase3Config(AppConfig):
    name = "phase3"
    verbose_name = "Phase 3: keys and jobs"

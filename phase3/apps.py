from django.apps import AppConfig


class Phase3Config(AppConfig):
    name = "phase3"
    verbose_name = "Phase 3: keys and jobs"

    def ready(self) -> None:
        from . import schema  # noqa: F401  (registers the OpenAPI auth extension)

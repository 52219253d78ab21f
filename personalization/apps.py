from django.apps import AppConfig


class PersonalizationConfig(AppConfig):
    name = "personalization"
    verbose_name = "Personalization"

    def ready(self) -> None:
        # Any write to what a configuration is made of makes cached configurations stale,
        # whoever writes it (API, admin, shell): see services.config.
        from django.db.models.signals import post_delete, post_save

        from .models import Experiment, PersonalizationRule, UserProfile
        from .services.config import config_invalidate

        def invalidate(**kwargs) -> None:
            config_invalidate()

        for model in (PersonalizationRule, Experiment, UserProfile):
            post_save.connect(invalidate, sender=model, dispatch_uid=f"p13n-save-{model.__name__}")
            post_delete.connect(invalidate, sender=model, dispatch_uid=f"p13n-del-{model.__name__}")

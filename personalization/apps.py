from django.apps import AppConfig


def _invalidate_configs(**kwargs) -> None:
    """Signal receiver: a rule, experiment or profile changed, so cached configurations are stale.

    Module level on purpose: signals hold receivers by weak reference, and a function
    defined inside ``ready()`` was collected once ``ready()`` returned, silently
    disconnecting every receiver (edits through the API or the admin were then served
    from the cache for up to five minutes).
    """
    from .services.config import config_invalidate

    config_invalidate()


class PersonalizationConfig(AppConfig):
    name = "personalization"
    verbose_name = "Personalization"

    def ready(self) -> None:
        # Any write to what a configuration is made of makes cached configurations stale,
        # whoever writes it (API, admin, shell): see services.config.
        from django.db.models.signals import post_delete, post_save

        from .models import Experiment, PersonalizationRule, UserProfile

        for model in (PersonalizationRule, Experiment, UserProfile):
            name = model.__name__
            post_save.connect(_invalidate_configs, sender=model, dispatch_uid=f"p13n-save-{name}")
            post_delete.connect(_invalidate_configs, sender=model, dispatch_uid=f"p13n-del-{name}")

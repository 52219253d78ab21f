"""Personalization test settings."""

import pytest


@pytest.fixture(autouse=True)
def _no_local_config_layer(settings):
    """The in-process config layer outlives a test's database; tests that want it opt in."""
    from personalization.services.config import _local

    settings.PERSONALIZATION_LOCAL_CACHE_SECONDS = 0
    _local.forget()
    yield
    _local.forget()

"""Personalization test settings."""

import pytest


@pytest.fixture(autouse=True)
def _no_local_config_layer(request):
    """The in-process config layer outlives a test's database; tests that want it opt in.

    Engine tests run without Django (``-p no:django``): nothing to do there.
    """
    if not request.config.pluginmanager.hasplugin("django"):
        yield
        return
    from personalization.services.config import _local

    request.getfixturevalue("settings").PERSONALIZATION_LOCAL_CACHE_SECONDS = 0
    _local.forget()
    yield
    _local.forget()

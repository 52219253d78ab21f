from .api import urlpatterns  # noqa: F401  (the routes live beside their views)

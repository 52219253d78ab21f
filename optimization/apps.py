from django.apps import AppConfig


class OptimizationConfig(AppConfig):
    name = "optimization"
    verbose_name = "Optimization"

    def ready(self) -> None:
        """Wrap database connections for the request profiler as they are opened.

        Done here rather than when the middleware is built: a thread's connection may open
        before the first request loads the middleware (pytest's test database does, and
        under ASGI the middleware is built on the event loop while the ORM runs in other
        threads). Outside a profiled request the wrapper only passes statements through.
        """
        from .middleware import profile_statements

        profile_statements()

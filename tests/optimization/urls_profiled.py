"""A tiny URLconf for the middleware tests: one view with an N+1 loop of slow statements."""

from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.http import FileResponse, JsonResponse, StreamingHttpResponse
from django.urls import path


def books(request, pk: int):
    """One list query, then 6 consecutive 10 ms lookups of one shape: an N+1 by Sentry's rule."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        for i in range(6):
            cursor.execute("SELECT pg_sleep(0.01), %s", [i])
    return JsonResponse({"pk": pk}, status=500 if pk == 0 else 200)


def export(request):
    """A streaming export: its 4 slow statements run while the body is sent, after the view."""

    def rows():
        with connection.cursor() as cursor:
            for i in range(4):
                cursor.execute("SELECT pg_sleep(0.01), %s", [i])
                yield f"{i}\n"

    return StreamingHttpResponse(rows())


def replica_books(request):
    """One list query on ``default``, then the N+1 loop of slow lookups on the ``replica`` alias."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    with connections["replica"].cursor() as cursor:
        for i in range(6):
            cursor.execute("SELECT pg_sleep(0.01), %s", [i])
    return JsonResponse({})


def replica_export(request):
    """A streaming export whose statements run on the ``replica`` alias while the body is sent."""

    def rows():
        with connections["replica"].cursor() as cursor:
            for i in range(3):
                cursor.execute("SELECT pg_sleep(0.01), %s", [i])
                yield f"{i}\n"

    return StreamingHttpResponse(rows())


def _books_statements() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        for i in range(6):
            cursor.execute("SELECT pg_sleep(0.01), %s", [i])


async def async_books(request, pk: int):
    """``books`` as an async view: the same statements through ``sync_to_async``, plus one
    call of the async ORM (which runs its statement through ``sync_to_async`` itself)."""
    from telemetry.models import Series

    await sync_to_async(_books_statements)()
    await Series.objects.filter(pk=-pk).aexists()
    return JsonResponse({"pk": pk}, status=500 if pk == 0 else 200)


def _slow_row(i: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.01), %s", [i])
    return f"{i}\n"


async def async_export(request):
    """An async streaming export: 4 slow statements through ``sync_to_async`` while it streams."""

    async def rows():
        for i in range(4):
            yield await sync_to_async(_slow_row)(i)

    return StreamingHttpResponse(rows())


async def async_elsewhere(request):
    """Statements on a thread-pool thread (``thread_sensitive=False``): a thread that is not
    the one running the middleware, with a connection of its own, opened for this request."""

    def work() -> None:
        try:
            _books_statements()
        finally:
            connection.close()  # this thread's own connection to the test database

    await sync_to_async(work, thread_sensitive=False)()
    return JsonResponse({})


# Contexts a view handed on (``contextvars.copy_context()``, as ``asyncio.create_task`` and a
# pool job started with the context do): the test runs statements in them after the request.
HANDED_ON: list = []


def hands_on_its_context(request):
    """One statement, then the request's context is kept for work that outlives the request."""
    import contextvars

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    HANDED_ON.append(contextvars.copy_context())
    return JsonResponse({})


async def async_hands_on_its_context(request):
    """The async twin: a context copied on the event loop (what ``create_task`` keeps)."""
    import contextvars

    await sync_to_async(_slow_row)(0)
    HANDED_ON.append(contextvars.copy_context())
    return JsonResponse({})


def download(request):
    return FileResponse(open(__file__, "rb"))  # the response closes it


urlpatterns = [
    path("books/<int:pk>/", books),
    path("export/", export),
    path("download/", download),
    path("replica/books/", replica_books),
    path("replica/export/", replica_export),
    path("async/books/<int:pk>/", async_books),
    path("async/export/", async_export),
    path("async/elsewhere/", async_elsewhere),
    path("handoff/", hands_on_its_context),
    path("async/handoff/", async_hands_on_its_context),
]

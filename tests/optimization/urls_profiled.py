"""A tiny URLconf for the middleware tests: one view with an N+1 loop of slow statements."""

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


def download(request):
    return FileResponse(open(__file__, "rb"))  # the response closes it


urlpatterns = [
    path("books/<int:pk>/", books),
    path("export/", export),
    path("download/", download),
    path("replica/books/", replica_books),
    path("replica/export/", replica_export),
]

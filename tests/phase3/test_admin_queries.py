"""No admin page of the project's apps runs more SQL queries as it shows more rows (no N+1).

Operators open these pages on tables with thousands of rows: a changelist column or an
inline that loads a related row per row shown costs a query per row. Each page is rendered
with a few rows and with many, and must run exactly as many queries both times.

Rows are built from each model's fields (``RowMaker``), not from the demo world, so every
model is covered, with every foreign key filled in (nullable ones too, since those are the
ones Django's changelist does not join by itself), and each row gets parents of its own,
as real rows do. Changelists are filtered to the rows made here (``?id__in=``), so rows the
session's demo world may have left in the tables do not change what is measured.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib import admin
from django.db import connection, models
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from optimization.engine.sql_shape import sql_shape

PROJECT_APPS = ("phase3", "telemetry", *settings.PHASE3_SYSTEMS)
# Both fit on one changelist page (list_per_page is 100), so both render every row.
SMALL, LARGE = 3, 30

pytestmark = pytest.mark.django_db


def _project_admins() -> list:
    return [
        pytest.param(model, model_admin, id=model._meta.label)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in PROJECT_APPS
    ]


def _with_related_rows() -> list:
    """Admins whose change page lists rows of other tables: inlines and many-to-many fields."""
    return [
        param
        for param in _project_admins()
        if param.values[1].inlines or param.values[0]._meta.local_many_to_many
    ]


class RowMaker:
    """Valid rows of any model, from its fields alone; each row gets parents of its own.

    Required and unique fields get a value of their type (the first choice for a field with
    choices); every foreign key gets a new parent row, except a link of a model to itself,
    which stays empty. Fields that may be empty or have a default keep their default.
    """

    def __init__(self) -> None:
        self._n = itertools.count(1)
        self._now = timezone.now()

    def make(self, model: type[models.Model], /, **given) -> models.Model:
        n = next(self._n)
        values = dict(given)
        for field in model._meta.concrete_fields:
            if field.primary_key or field.name in given:
                continue
            if field.is_relation:
                if field.related_model is not model:
                    values[field.name] = self.make(field.related_model)
                continue
            if field.null or (field.has_default() and not field.unique):
                continue
            values[field.name] = self._value(field, n)
        obj = model(**values)
        obj.save()
        return obj

    def _value(self, field: models.Field, n: int):
        if field.choices:
            return field.flatchoices[0][0]
        if isinstance(field, models.DateTimeField):
            return self._now - timedelta(seconds=n)
        if isinstance(field, models.DateField):
            return self._now.date() - timedelta(days=n)
        if isinstance(field, models.BooleanField):
            return False
        if isinstance(field, models.IntegerField):
            return n
        if isinstance(field, models.FloatField):
            return 0.5
        if isinstance(field, models.JSONField):
            return {}
        if isinstance(field, models.BinaryField):
            return b"x"
        if isinstance(field, models.CharField | models.TextField):
            return f"q{n}-{field.name}"[: field.max_length]
        raise NotImplementedError(f"no test value for {field!r}")


def _inline_fk(parent: type[models.Model], inline) -> models.ForeignKey:
    """The key an inline's rows hang from: its ``fk_name``, or its one key to the parent."""
    (fk,) = (
        field
        for field in inline.model._meta.fields
        if field.is_relation
        and field.related_model is parent
        and inline.fk_name in (None, field.name)
    )
    return fk


def _get(client, url: str, params: dict | None = None, *, warm_up: bool = False):
    """One request and the SQL it ran.

    ``warm_up`` makes a first, unmeasured request, so that process-wide caches (content
    types, ...) filled by a page's first rendering are not counted against the small page.
    """
    if warm_up:
        assert client.get(url, params).status_code == 200, url
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, url
    return response, [q["sql"] for q in captured.captured_queries]


def _assert_same_count(small: list[str], large: list[str], what: str) -> None:
    """Equal counts, or a failure naming the statements that came back once per row."""
    grown = Counter(map(sql_shape, large)) - Counter(map(sql_shape, small))
    assert len(large) == len(small), (
        f"{what}: {len(small)} queries for {SMALL} rows, {len(large)} for {LARGE}; "
        f"run more often: {dict(grown)}"
    )


@pytest.mark.parametrize(("model", "model_admin"), _project_admins())
def test_changelist_and_change_page_queries_do_not_grow_with_rows(model, model_admin, admin_client):
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    maker = RowMaker()
    rows = [maker.make(model) for _ in range(SMALL)]
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[rows[0].pk])

    def ids() -> dict:
        return {"id__in": ",".join(str(row.pk) for row in rows)}

    def measure(*, warm_up: bool = False) -> tuple[list[str], list[str]]:
        response, listed = _get(admin_client, changelist, ids(), warm_up=warm_up)
        assert response.context["cl"].result_count == len(rows)
        # The change page too: its select widgets list whole parent tables, which grow with
        # the rows made here (each row has parents of its own).
        _, changed = _get(admin_client, change, warm_up=warm_up)
        return listed, changed

    small = measure(warm_up=True)
    rows += [maker.make(model) for _ in range(LARGE - SMALL)]
    large = measure()

    _assert_same_count(small[0], large[0], f"{opts.label} changelist")
    _assert_same_count(small[1], large[1], f"{opts.label} change page")


@pytest.mark.parametrize(("model", "model_admin"), _with_related_rows())
def test_change_page_queries_do_not_grow_with_inline_and_many_to_many_rows(
    model, model_admin, admin_client
):
    opts = model._meta
    maker = RowMaker()
    parent = maker.make(model)
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[parent.pk])

    def add_related(count: int) -> None:
        for inline in model_admin.inlines:
            fk = _inline_fk(model, inline)
            for _ in range(count):
                maker.make(inline.model, **{fk.name: parent})
        for m2m in opts.local_many_to_many:
            getattr(parent, m2m.name).add(*(maker.make(m2m.related_model) for _ in range(count)))

    def measure(count: int, *, warm_up: bool = False) -> list[str]:
        response, queries = _get(admin_client, change, warm_up=warm_up)
        for inline in response.context["inline_admin_formsets"]:
            assert len(inline.formset.initial_forms) == count, inline.opts
        return queries

    add_related(SMALL)
    small = measure(SMALL, warm_up=True)
    add_related(LARGE - SMALL)
    large = measure(LARGE)

    _assert_same_count(small, large, f"{opts.label} change page with inline / related rows")

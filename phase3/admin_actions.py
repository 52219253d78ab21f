"""Who may run an admin action: Django's "change" permission on the model it acts on.

Django offers a ModelAdmin's actions to everyone who can open its change list, so without
a declared permission a staff user who may only *view* anomalies could resolve them, mark
them false positives (which teaches the detector to stay quiet) or execute scaling
decisions. Actions declare ``permissions=["act"]`` and this mixin answers for them. It is
its own permission, not ``"change"``, because several admins are read-only forms (results
written by services) whose ``has_change_permission`` is False for everyone, while their
actions (acknowledge an insight, activate a model) are what operators are there to do.
"""

from __future__ import annotations

from django.contrib.auth import get_permission_codename
from django.db.models import Model
from django.http import HttpRequest


def may_change(request: HttpRequest, model: type[Model]) -> bool:
    opts = model._meta
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")


def may_add(request: HttpRequest, model: type[Model]) -> bool:
    opts = model._meta
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('add', opts)}")


class ActionPermissionMixin:
    """``permissions=["act"]`` on an action: the user may change this admin's model."""

    model: type[Model]

    def has_act_permission(self, request: HttpRequest) -> bool:
        return may_change(request, self.model)

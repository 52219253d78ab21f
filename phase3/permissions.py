"""Role checks applied to every API view by default (deny by default).

Views declare what they need with plain attributes, so apps never import this module:
safe methods need ``viewer``; other methods need ``view.write_role`` (default
``operator``); ``view.action_roles[view.action]`` overrides both for a viewset action.

Staff users logged into the admin reach the API through their session: a superuser is
an admin; other staff get the role of their ``phase3-<role>`` group, and on model-backed
views Django's model permissions must also allow the method.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission, DjangoModelPermissions

from .admin_actions import may_change
from .models import ROLE_RANK, Role

GROUP_PREFIX = "phase3-"


def required_role(request, view) -> str:
    action = getattr(view, "action", None)
    action_roles = getattr(view, "action_roles", None) or {}
    if action and action in action_roles:
        return action_roles[action]
    if request.method in SAFE_METHODS:
        return Role.VIEWER
    return getattr(view, "write_role", Role.OPERATOR)


def session_role(user) -> str | None:
    if not (user and user.is_authenticated and user.is_active and user.is_staff):
        return None
    if user.is_superuser:
        return Role.ADMIN
    names = set(user.groups.values_list("name", flat=True))
    for role in (Role.ADMIN, Role.OPERATOR, Role.VIEWER):
        if f"{GROUP_PREFIX}{role}" in names:
            return role
    return Role.VIEWER  # staff may read; Django's model permissions still apply below


_CRUD_ACTIONS = frozenset({"list", "retrieve", "create", "update", "partial_update", "destroy"})


class _ModelPerms(DjangoModelPermissions):
    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view) -> bool:
        """An action on one object (acknowledge, expire) is a change to it, not an addition.

        DRF maps every POST to "add", so a staff operator allowed to change anomalies, as
        in the admin, got a 403 on `/acknowledge`.
        """
        action = getattr(view, "action", None)
        if (
            getattr(view, "detail", False)
            and action not in _CRUD_ACTIONS
            and request.method not in SAFE_METHODS
        ):
            return may_change(request, self._queryset(view).model)
        return super().has_permission(request, view)


class HasRole(BasePermission):
    message = "Your key's role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = required_role(request, view)
        role = getattr(user, "role", None) or session_role(user)
        if role is None or ROLE_RANK[role] < ROLE_RANK[needed]:
            return False
        if getattr(user, "api_key", None) is None and _has_model(view):
            return user.is_superuser or _ModelPerms().has_permission(request, view)
        return True


def _has_model(view) -> bool:
    try:
        return getattr(view, "queryset", None) is not None or (
            hasattr(view, "get_queryset") and view.get_queryset() is not None
        )
    except Exception:  # a view without a queryset has no model permissions to check
        return False

"""Routes of the personalization app, mounted under /admin/api/phase3/."""

from django.urls import re_path

from telemetry.routers import OptionalSlashRouter

from .api import ExperimentViewSet, ProfileViewSet, RuleViewSet, StatusView, UserConfigView

router = OptionalSlashRouter()
router.register("personalization/profiles", ProfileViewSet, basename="personalization-profile")
router.register("personalization/rules", RuleViewSet, basename="personalization-rule")
router.register(
    "personalization/experiments", ExperimentViewSet, basename="personalization-experiment"
)

urlpatterns = [
    re_path(r"^personalization/status/?$", StatusView.as_view(), name="personalization-status"),
    re_path(
        r"^personalization/users/(?P<user_id>.+?)/config/?$",
        UserConfigView.as_view(),
        name="personalization-user-config",
    ),
    *router.urls,
]

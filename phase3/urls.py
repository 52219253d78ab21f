from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from telemetry.routers import OptionalSlashRouter

from .api import ApiKeyViewSet, JobRunViewSet
from .api_root import ApiNotFoundView, ApiRootView
from .overview import OverviewView

router = OptionalSlashRouter()
router.register("keys", ApiKeyViewSet, basename="apikey")
router.register("jobs", JobRunViewSet, basename="jobrun")

API = "admin/api/phase3/"

api_patterns = [
    re_path(r"^$", ApiRootView.as_view(), name="api-root"),
    re_path(r"^overview/?$", OverviewView.as_view(), name="overview"),
    re_path(r"^schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^schema/docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    re_path(r"^schema/redoc/?$", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("", include("telemetry.urls")),
    *[path("", include(f"{label}.urls")) for label in settings.PHASE3_SYSTEMS],
    path("", include(router.urls)),
    # Last: any other path under the API is a JSON 404, not the admin's login redirect.
    re_path(r"^(?P<unknown>.+)$", ApiNotFoundView.as_view(), name="api-not-found"),
]

urlpatterns = [
    # The API is mounted before admin.site.urls: the admin's catch-all would swallow it.
    path(API, include(api_patterns)),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]

admin.site.site_header = "Phase 3"
admin.site.site_title = "Phase 3"
admin.site.index_title = "Optimization, personalization, forecasting, scaling, insights, anomalies"

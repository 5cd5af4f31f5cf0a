from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from accounting.api.metrics import PrometheusMetricsView
from telemetry.api.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Prometheus scrapes the root path by default (docs/integrations.md); /api/v1/metrics is the same view.
    path("metrics", PrometheusMetricsView.as_view(), name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/ingest/", include("telemetry.api.urls")),
    path("api/v1/", include("accounting.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its initialiser as a script file: no inline script (CSP script-src 'self').
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Its own head: the package's template links Google Fonts (everything is served locally).
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="api-schema", template_name="dashboard/redoc.html"),
        name="api-redoc",
    ),
    path("", include("dashboard.urls")),
]

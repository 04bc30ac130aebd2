from django.contrib import admin
from django.urls import include, path

from dashboard import probes

urlpatterns = [
    # At the root, without a trailing slash, where probes look for them.
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]

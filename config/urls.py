from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from config import oidc
from dashboard import probes

urlpatterns = [
    # At the root, without a trailing slash, where probes look for them.
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    # Browsers and tools ask for /favicon.ico whatever a page links: send them to the SVG
    # that every page links (templates/base.html, admin/base_site.html) rather than a 404.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    # OpenID Connect login (config/oidc.py); the names are mozilla-django-oidc's.
    path("oidc/authenticate/", oidc.OIDCLoginView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", oidc.OIDCCallbackView.as_view(), name="oidc_authentication_callback"),
    path("", include("dashboard.urls")),
]

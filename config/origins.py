"""Where a request comes from: one rule for the websocket handshake and for HTTP requests.

A page on another port of the same host is the same *site* to a browser, so the browser sends
the user's session cookie with what that page asks for (RFC 6265 §8.5: cookies do not provide
isolation by port; SameSite compares sites, which have no port). Only the origin,
scheme://host:port (RFC 6454), tells such a page from ours. So:

- A websocket handshake is accepted only when its Origin header is the server's own origin, or
  one listed in CSRF_TRUSTED_ORIGINS, by the rule Django's CsrfViewMiddleware applies to the
  Origin of every POST; and only when its Host is one ALLOWED_HOSTS names, which Django asks of
  every HTTP request. A handshake without an Origin is refused: every browser sends one.
- An HTTP request that a browser says another site's page asked for (its Fetch Metadata
  headers) is refused, unless it is a top-level GET navigation (the user opens a link: the
  page that linked cannot read the answer) or its Origin passes the rule above. Requests
  without those headers (curl, scripts) are not a browser's page acting for the user.
- POSTs are Django's CSRF middleware's, which also compares a POST's Origin by the same rule.
"""

import io
import logging

from channels.security.websocket import WebsocketDenier
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.deprecation import MiddlewareMixin

log = logging.getLogger(__name__)

# The page's own request, or one the user made by typing, bookmarking or opening a file
# (W3C Fetch Metadata Request Headers, Sec-Fetch-Site).
_OWN_SITE = {"same-origin", "none"}


def handshake_request(*, scope: dict) -> HttpRequest:
    """A Django request for a websocket handshake's ASGI scope, made by Django's own ASGI
    request class, so Host, X-Forwarded-Host (USE_X_FORWARDED_HOST), SECURE_PROXY_SSL_HEADER
    and ALLOWED_HOSTS mean for the socket what they mean for a page.

    The scope's scheme is "ws" or "wss", and "ws" when the server leaves it out, as daphne
    does (ASGI spec, websocket scope); the page that opens a socket to ws://host is served from http://host and one that
    opens wss:// from https://.
    """
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    return ASGIRequest({**scope, "method": "GET", "scheme": scheme}, io.BytesIO())


def origin_verify(*, request: HttpRequest) -> bool:
    """True when the request's Origin header is this server's own origin, or one that
    CSRF_TRUSTED_ORIGINS lists, and its Host is one ALLOWED_HOSTS names.

    Own origin: "<scheme>://<host>", the scheme from request.is_secure() and the host from
    request.get_host(), compared as strings, as a browser serialises an origin: another port,
    another scheme, another name for the same machine, "null" and "" are all someone else.
    CSRF_TRUSTED_ORIGINS entries match exactly, or with a "*." wildcard, any subdomain over
    that scheme (Django's documented CSRF_TRUSTED_ORIGINS rule). A request without Origin, or
    with two (joined into one value with a comma), is refused.
    """
    if "HTTP_ORIGIN" not in request.META:
        return False
    try:
        request.get_host()
    except DisallowedHost:
        # DNS rebinding: a page whose own name points at this machine is its own origin.
        return False
    # Django has no public name for its CSRF origin rule; this is the method its middleware
    # runs on the Origin of every unsafe request (django/middleware/csrf.py).
    # tests/dashboard/test_origins.py says so if an upgrade removes it. A fresh instance reads the
    # settings now: the middleware caches CSRF_TRUSTED_ORIGINS on the instance.
    return CsrfViewMiddleware(_unused_get_response)._origin_verified(request)


def _unused_get_response(request):
    raise AssertionError("only the origin check of CsrfViewMiddleware is used here")


def fetch_site_allowed(*, request: HttpRequest) -> bool:
    """False when a browser says another site's page asked for this (Sec-Fetch-Site
    "same-site" or "cross-site"; another port of our host is "same-site") and it is neither a
    top-level GET/HEAD navigation (Sec-Fetch-Dest "document") nor from an origin that
    origin_verify accepts.

    Why a read needs this: such a page cannot read our answers (no CORS grant) nor run them
    (nosniff, and JSON, NDJSON and CSV are no scripts), but it can time them, or watch their
    load and error events, with the user's cookie: enough to learn, a query at a time, what
    the user's data holds (XS-Leaks). Refusing the request outright leaves nothing to watch.
    Rule: W3C Fetch Metadata Request Headers; policy: web.dev's resource isolation policy.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is None or site in _OWN_SITE:
        return True
    # web.dev's policy lets frames navigate too; these pages refuse to be framed anyway (CSP
    # frame-ancestors 'none', X-Frame-Options DENY), and a frame's load event would still time
    # the answer. Chromium before 80 sent no Sec-Fetch-Dest: a navigation was then top-level.
    if (
        request.method in ("GET", "HEAD")
        and request.headers.get("Sec-Fetch-Mode") == "navigate"
        and request.headers.get("Sec-Fetch-Dest", "document") == "document"
    ):
        return True
    return origin_verify(request=request)


class FetchSiteMiddleware(MiddlewareMixin):
    """Django middleware: 403 for what fetch_site_allowed refuses. Placed after WhiteNoise, so
    static files stay loadable from anywhere. MiddlewareMixin makes it async-capable, so the
    ASGI handler runs it without a thread hop."""

    def process_request(self, request):
        if fetch_site_allowed(request=request):
            return None
        log.warning(
            "Refused %s %s asked for by another site's page (Sec-Fetch-Site %r, Origin %r)",
            request.method, request.path, request.headers.get("Sec-Fetch-Site"), request.headers.get("Origin"),
        )
        return HttpResponseForbidden("Refused: another site's page asked for this.", content_type="text/plain")


class WebsocketOriginMiddleware:
    """ASGI middleware for websocket scopes: the handshake goes on only when origin_verify
    accepts it; otherwise the socket is closed before it is accepted, which the server answers
    with HTTP 403 (the ASGI websocket spec, websocket.close before websocket.accept)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            request = handshake_request(scope=scope)
            if not origin_verify(request=request):
                log.warning(
                    "Refused a websocket to %s from Origin %r (Host %r)",
                    scope.get("path"), request.META.get("HTTP_ORIGIN"), request.META.get("HTTP_HOST"),
                )
                # channels' own denier: waits for websocket.connect, answers websocket.close.
                return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)

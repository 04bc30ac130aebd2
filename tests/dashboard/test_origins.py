"""Where a request comes from: the websocket handshake, POSTs, and the reads that act for a
logged-in user (the JSON API and the exports), through the whole ASGI application or Django's
test client.

A page on another port of the same host is the same *site* to a browser, so the browser sends
it the user's session cookie (RFC 6265 §8.5: cookies do not provide isolation by port; the
SameSite attribute compares sites, which have no port). Only the origin, scheme://host:port
(RFC 6454 §4), tells that page from ours. The browser's side of it is in
tests/browser/test_origin_browser.py.
"""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.middleware.csrf import CsrfViewMiddleware
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from config.asgi import application
from tests.support.personas import persona_user

# The server as a browser reaches it in these tests: the Host header it sends.
HOST = "127.0.0.1:8000"
SAME_ORIGIN = f"http://{HOST}"
SOCKETS = ["/ws/feed/", "/ws/invocations/"]


@pytest.fixture
def session_cookie(transactional_db):
    """A logged-in session's cookie header. The handshake reads the session on another thread,
    so the user has to be committed: hence transactional_db."""
    client = Client()
    client.force_login(persona_user(name="watcher", role="Viewer"))
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


def handshake(path, session_cookie, *, origins=(SAME_ORIGIN,), host=HOST, scheme=None, headers=()):
    """Opens a websocket through the whole ASGI application, as a browser's handshake would,
    and closes it again. `origins` are the Origin headers sent (a browser sends one); `scheme`
    is the ASGI scope's, "ws" when left out (the ASGI spec's default; daphne leaves it out).
    Returns (accepted, close code)."""
    sent = [(b"host", host.encode())] if host is not None else []
    sent += [(b"origin", origin.encode()) for origin in origins]
    sent += [session_cookie, *headers]

    async def attempt():
        communicator = WebsocketCommunicator(application, path, headers=sent)
        if scheme is not None:
            communicator.scope["scheme"] = scheme
        accepted, code = await communicator.connect()
        await communicator.disconnect()
        return accepted, code

    return async_to_sync(attempt)()


# ---- the websocket handshake ------------------------------------------------------------------


@pytest.mark.parametrize("path", SOCKETS)
def test_it_accepts_a_socket_from_the_servers_own_origin(path, session_cookie):
    assert handshake(path, session_cookie) == (True, None)


@pytest.mark.parametrize("path", SOCKETS)
def test_it_accepts_a_socket_on_a_default_port(path, session_cookie):
    # A browser leaves the default port out of both Host and Origin (RFC 6454 §6.1).
    assert handshake(path, session_cookie, host="localhost", origins=["http://localhost"])[0]


@pytest.mark.parametrize("path", SOCKETS)
@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another port of the same host: the case
        "http://localhost:9999",  # another name and port for the same machine: the case
        "http://localhost:8000",  # the same port under another name is another origin
        "http://127.0.0.1",  # port 80 is another port too
        "https://127.0.0.1:8000",  # another scheme
        "http://evil.example",  # another host
        "null",  # sandboxed iframes, data: and file: pages (HTML's opaque origin serialises so)
        "",
        "http://127.0.0.1:8000/",  # an origin never has a path; browsers never send one
    ],
)
def test_it_refuses_a_socket_from_another_origin(path, origin, session_cookie):
    assert handshake(path, session_cookie, origins=[origin])[0] is False


@pytest.mark.parametrize("path", SOCKETS)
def test_it_refuses_a_socket_without_an_origin(path, session_cookie):
    # Every browser sends Origin on a websocket handshake (RFC 6455 §4.1, item 8); a request
    # without one says nothing about the page that asked for it.
    assert handshake(path, session_cookie, origins=[])[0] is False


@pytest.mark.parametrize("path", SOCKETS)
def test_it_refuses_a_socket_with_two_origins(path, session_cookie):
    assert handshake(path, session_cookie, origins=[SAME_ORIGIN, SAME_ORIGIN])[0] is False


@pytest.mark.parametrize("path", SOCKETS)
def test_it_refuses_a_socket_to_a_host_it_does_not_serve(path, session_cookie):
    # DNS rebinding: a page at rebind.example:8000, its name pointed at this machine, is its own
    # origin. Django answers such a Host with 400 on HTTP (ALLOWED_HOSTS); the socket does too.
    host = "rebind.example:8000"
    assert handshake(path, session_cookie, host=host, origins=[f"http://{host}"])[0] is False


@pytest.mark.parametrize("path", SOCKETS)
def test_it_takes_the_servers_scheme_from_a_tls_socket(path, session_cookie):
    # wss is http's https: a page served over https opens wss to the same host (ASGI spec,
    # websocket scope: scheme "ws" or "wss").
    assert handshake(path, session_cookie, scheme="wss", origins=[f"https://{HOST}"])[0]
    assert handshake(path, session_cookie, scheme="wss", origins=[SAME_ORIGIN])[0] is False


@pytest.mark.parametrize("path", SOCKETS)
def test_it_takes_the_servers_scheme_from_the_proxy_header_django_trusts(path, session_cookie, settings):
    # Behind a TLS-terminating proxy the socket reaches daphne as ws; SECURE_PROXY_SSL_HEADER is
    # how Django is told, and request.is_secure() reads it (Django docs, settings).
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    forwarded = [(b"x-forwarded-proto", b"https")]
    assert handshake(path, session_cookie, origins=[f"https://{HOST}"], headers=forwarded)[0]
    assert handshake(path, session_cookie, origins=[SAME_ORIGIN], headers=forwarded)[0] is False
    # Without the setting, the header is anyone's to send and means nothing.
    settings.SECURE_PROXY_SSL_HEADER = None
    assert handshake(path, session_cookie, origins=[f"https://{HOST}"], headers=forwarded)[0] is False


@pytest.mark.parametrize("path", SOCKETS)
def test_it_accepts_a_socket_from_a_trusted_origin(path, session_cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://dash.example.com"]
    assert handshake(path, session_cookie, origins=["https://dash.example.com"])[0]
    # Exactly that origin, as Django's CSRF check reads the setting.
    assert handshake(path, session_cookie, origins=["http://dash.example.com"])[0] is False
    assert handshake(path, session_cookie, origins=["https://dash.example.com:8443"])[0] is False
    assert handshake(path, session_cookie, origins=["https://other.example.com"])[0] is False


@pytest.mark.parametrize("path", SOCKETS)
def test_it_accepts_a_socket_from_a_trusted_wildcard_origin(path, session_cookie, settings):
    # "https://*.example.com" trusts example.com's subdomains over https (Django docs,
    # CSRF_TRUSTED_ORIGINS).
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    assert handshake(path, session_cookie, origins=["https://team.example.com"])[0]
    assert handshake(path, session_cookie, origins=["http://team.example.com"])[0] is False
    assert handshake(path, session_cookie, origins=["https://example.org"])[0] is False


def test_it_follows_djangos_csrf_origin_rule():
    # The socket reuses the rule CsrfViewMiddleware applies to an unsafe request's Origin (it
    # has no public name). If an upgrade renames or changes it, this says so before the
    # websocket tests above fail for a less obvious reason.
    assert callable(getattr(CsrfViewMiddleware, "_origin_verified", None))


# ---- POSTs ------------------------------------------------------------------------------------


def every_view(patterns=None, prefix=""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from every_view(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def test_it_checks_csrf_on_every_view():
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE
    exempt = [route for route, view in every_view() if getattr(view, "csrf_exempt", False)]
    assert exempt == []


@pytest.fixture
def staff(django_user_model):
    """A logged-in operator whose client runs Django's CSRF checks, as a browser's requests
    meet them, with the CSRF token a page of ours would have given it."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(persona_user(name="operator", role="Admin", is_staff=True))
    client.get("/admin/")
    client.token = client.cookies[settings.CSRF_COOKIE_NAME].value
    return client


def logged_in(client) -> bool:
    return client.get("/api/sources").status_code == 200


def log_out(client, **headers):
    return client.post("/admin/logout/", {"csrfmiddlewaretoken": client.token}, headers=headers)


def test_it_accepts_a_post_from_its_own_origin(staff):
    # The test client's server is http://testserver.
    assert log_out(staff, origin="http://testserver").status_code == 200
    assert not logged_in(staff)


@pytest.mark.parametrize(
    "origin", ["http://testserver:9999", "https://testserver", "http://localhost", "null"]
)
def test_it_refuses_a_post_from_another_origin_even_with_the_token(staff, origin):
    # Cookies are shared across a host's ports, so a page on another port can read the CSRF
    # cookie; the Origin check is what refuses it (Django's CsrfViewMiddleware).
    assert log_out(staff, origin=origin).status_code == 403
    assert logged_in(staff)


def test_it_accepts_a_post_from_a_trusted_origin(staff, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://dash.example.com"]
    assert log_out(staff, origin="https://dash.example.com").status_code == 200
    assert not logged_in(staff)


# ---- reads that act for a logged-in user ------------------------------------------------------

READS = ["/api/records", "/api/sources", "/export/records.csv", "/export/records.ndjson", "/feed/"]


def fetch(client, path, *, site, mode="no-cors", dest="script", method="get", **headers):
    """A request as Chromium sends it, with its Fetch Metadata headers (W3C Fetch Metadata
    Request Headers)."""
    sent = {"sec-fetch-site": site, "sec-fetch-mode": mode, "sec-fetch-dest": dest, **headers}
    return getattr(client, method)(path, headers=sent)


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize(
    ("site", "mode", "dest"),
    [
        ("same-site", "no-cors", "script"),  # <script src> on another port: JSON/CSV hijacking
        ("same-site", "no-cors", "image"),  # <img src>: timing and error-event leaks
        ("same-site", "cors", "empty"),  # fetch(..., {credentials: "include"})
        ("cross-site", "no-cors", "script"),
        ("same-site", "navigate", "iframe"),  # a frame's load event times the answer
        ("same-site", "navigate", "object"),
        ("same-site", "navigate", "embed"),
    ],
)
def test_it_refuses_a_read_asked_for_by_another_sites_page(staff, path, site, mode, dest):
    assert fetch(staff, path, site=site, mode=mode, dest=dest).status_code == 403


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize(
    ("site", "mode", "dest"),
    [
        ("same-origin", "cors", "empty"),  # our own pages' fetch()
        ("none", "navigate", "document"),  # typed into the address bar, a bookmark
        ("same-site", "navigate", "document"),  # a link followed from another port: shown, not read
        ("cross-site", "navigate", "document"),
    ],
)
def test_it_serves_our_pages_and_what_the_user_opens(staff, path, site, mode, dest):
    assert fetch(staff, path, site=site, mode=mode, dest=dest).status_code == 200


@pytest.mark.parametrize("path", READS)
def test_it_serves_a_client_that_sends_no_fetch_metadata(staff, path):
    # curl, scripts, older browsers: nothing says a page asked, and without a page there is no
    # one to read the answer but the caller.
    assert staff.get(path).status_code == 200


def test_it_refuses_a_form_post_from_another_port(staff):
    # What a form on another port submits: the token it read from the cookie it shares with us.
    navigation = {"sec-fetch-site": "same-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
    assert log_out(staff, origin="http://testserver:9999", **navigation).status_code == 403
    assert logged_in(staff)


def test_it_serves_a_cors_read_from_a_trusted_origin(staff, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://dash.example.com"]
    def read(origin):
        return fetch(staff, "/api/records", site="cross-site", mode="cors", dest="empty", origin=origin).status_code

    assert read("https://dash.example.com") == 200
    assert read("https://evil.example") == 403


@pytest.mark.parametrize("path", READS)
def test_it_lets_no_other_origin_read_or_run_a_response(staff, path):
    response = staff.get(path)
    # No CORS grant, so a page of another origin cannot read the body (Fetch standard, CORS
    # check); and nosniff, so a <script> or <style> elsewhere never runs it as code (Fetch
    # standard, "should response to request be blocked due to nosniff").
    assert "Access-Control-Allow-Origin" not in response
    assert response["X-Content-Type-Options"] == "nosniff"

"""A page served from another port of the same host, in Chromium, with the user logged in to
Shardwatch: the browser gives it the session cookie (RFC 6265 §8.5: cookies do not provide
isolation by port), so only the origin check stands between it and the user's data."""

from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from django.conf import settings

from tests.browser.conftest import HOST, SERVER_LOG, wait_for_socket
from tests.support.http_servers import QuietHandler, http_server

OPEN_SOCKET = """async (url) => {
    const socket = new WebSocket(url);
    const outcome = await new Promise(resolve => {
        socket.onopen = () => resolve("open");
        socket.onclose = () => resolve("refused");
    });
    socket.close();
    return outcome;
}"""


class Elsewhere(QuietHandler):
    """Another web server on the same host: serves one empty page, and keeps the Cookie header
    of each request it receives (server.cookies)."""

    def do_GET(self):
        self.server.cookies.append(self.headers.get("Cookie", ""))
        body = b"<!doctype html><title>Another port</title><p>Another site's page on the same host.</p>"
        self.answer(200, body, content_type="text/html; charset=utf-8")


@pytest.fixture
def elsewhere() -> Iterator[ThreadingHTTPServer]:
    with http_server(Elsewhere, cookies=[]) as server:
        yield server


def server_log_since(offset: int) -> str:
    with open(SERVER_LOG, errors="replace") as log:
        log.seek(offset)
        return log.read()


def test_it_refuses_a_socket_opened_by_a_page_on_another_port(logged_in_page, live_server_url, elsewhere):
    page = logged_in_page
    ws_url = live_server_url.replace("http://", "ws://")
    # Our own page opens its socket: the session and the server are fine.
    page.goto("/feed/")
    wait_for_socket(page)
    assert page.evaluate(OPEN_SOCKET, f"{ws_url}/ws/invocations/") == "open"

    log_start = SERVER_LOG.stat().st_size
    other_origin = f"http://{HOST}:{elsewhere.server_port}"
    page.goto(f"{other_origin}/")
    # The browser hands the other port the session cookie; it sends it with the handshake too.
    assert f"{settings.SESSION_COOKIE_NAME}=" in elsewhere.cookies[-1]

    assert page.evaluate(OPEN_SOCKET, f"{ws_url}/ws/feed/") == "refused"
    assert page.evaluate(OPEN_SOCKET, f"{ws_url}/ws/invocations/") == "refused"
    # Refused for its origin, not for want of a session (an anonymous socket is refused too).
    refusals = [line for line in server_log_since(log_start).splitlines() if "Refused a websocket" in line]
    assert len(refusals) == 2
    assert all(repr(other_origin) in line for line in refusals)


def test_it_refuses_the_api_to_a_page_on_another_port(logged_in_page, live_server_url, elsewhere):
    page = logged_in_page
    read = "async (url) => { await fetch(url, {credentials: 'include', mode: 'no-cors'}); }"
    # From our own page, the same request is served.
    with page.expect_response(f"{live_server_url}/api/records") as answered:
        page.evaluate(read, f"{live_server_url}/api/records")
    assert answered.value.status == 200

    page.goto(f"http://{HOST}:{elsewhere.server_port}/")
    for path in ("/api/records", "/export/records.csv"):
        with page.expect_response(f"{live_server_url}{path}") as answered:
            page.evaluate(read, f"{live_server_url}{path}")
        assert answered.value.status == 403

"""Real-browser tests: Playwright's sync API drives Debian's Chromium against a live Shardwatch.

How the live server works here
------------------------------
`asgi_live_server` starts Channels' daphne-based live server (`daphne.testing.DaphneProcess`,
which `channels.testing.ChannelsLiveServerTestCase` uses too) once for this package. It is a
multiprocessing child, forked from the pytest process on Linux, serving `config.asgi.application`
(HTTP and websockets) on a free port of 127.0.0.1: the same daphne and ASGI application that
`make demo` runs. Static files come through WhiteNoise, as in production, not through the
ASGIStaticFilesHandler that Channels wraps around the application by default.

- Which database it sees. The server is started after pytest-django has created the test
  database, and its setup names that database explicitly, so the server reads and writes the
  PostgreSQL test database (TEST_DATABASE_NAME). It opens its own connections: ours are closed
  before the fork. The fork happens with pytest-django's database blocker lifted, or every
  request in the server would fail with "Database access not allowed".
- Why tests must commit. The server only sees committed rows, so every browser test runs under
  `transactional_db` (through `live_server_url`), which empties the tables after each test. The
  test-wrapping `db` fixture or an in-memory database would be invisible to the server.
- Channel layer. The server uses the same Redis channel layer as the test process (REDIS_URL on
  db 15 and this run's CHANNEL_PREFIX, both from tests/settings.py), so a `group_send` from a test
  reaches the consumers the browser is connected to.
- Its output (Django's request errors and tracebacks) goes to test-artifacts/live-server.log.
  A failing test prints what the server logged during it, the browser console and page errors,
  and saves a screenshot.

Playwright
----------
- From `sync_playwright().start()` until `stop()`, Playwright keeps its asyncio loop marked as
  running in the main thread, and Django's ORM then raises SynchronousOnlyOperation. `browser`
  sets DJANGO_ALLOW_ASYNC_UNSAFE for exactly that span and removes it afterwards, so the rest of
  the suite keeps Django's check. That is why `browser` is package-scoped, not session-scoped.
- `browser` starts after the server, so the fork copies no Playwright state into the server.
- Never `playwright install`: it downloads a browser, which cannot work here. `make test` installs
  Debian's `chromium` (scripts/test.sh).
"""

import contextlib
import functools
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.testing.live import make_application
from daphne.testing import DaphneProcess
from django.conf import settings
from django.db import connections
from django.test.utils import modify_settings
from playwright.sync_api import Browser, Page, sync_playwright
from tests.support.chromium import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
SERVER_LOG = ARTIFACTS / "live-server.log"

HOST = "127.0.0.1"
SERVER_START_TIMEOUT_S = 30
# Playwright's default is 30 s; a page of this app that takes 10 s is broken, and failing sooner
# keeps a broken run short.
DEFAULT_TIMEOUT_MS = 10_000

PASSWORD = "correct-horse-battery-staple"

log = logging.getLogger(__name__)
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


def _prepare_server_process(*, database_name: str) -> None:
    """Runs in the server process just before it serves."""
    out = open(SERVER_LOG, "a", buffering=1)
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    sys.stdout = sys.stderr = out
    # The console handler was made while pytest captured output; point it at the log instead.
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(out)
    settings.DATABASES["default"]["NAME"] = database_name


def _application():
    """The ASGI application, clearing Django's ContentType cache before each request.

    Transactional tests flush the database after each test, which re-creates content types
    under new ids; this server process lives for the whole package and would go on using the
    old ids (the admin's change log then fails its foreign key)."""
    from django.contrib.contenttypes.models import ContentType

    application = make_application(static_wrapper=None)

    async def fresh_content_types(scope, receive, send):
        ContentType.objects.clear_cache()
        await application(scope, receive, send)

    return fresh_content_types


@pytest.fixture(scope="package")
def asgi_live_server(django_db_setup, django_db_blocker) -> Iterator[str]:
    """Channels' daphne live server for this package; yields its base URL. Use `live_server_url`
    in tests, which also gives them a database the server can see."""
    with live_server_running(django_db_blocker=django_db_blocker) as url:
        yield url


@contextlib.contextmanager
def live_server_running(*, django_db_blocker) -> Iterator[str]:
    """The live server while the block runs; yields its base URL. The server process sees the
    settings as they are when the block starts (it is forked then): a package that needs other
    settings (tests/browser_oidc) overrides them around this block."""
    ARTIFACTS.mkdir(exist_ok=True)
    SERVER_LOG.write_text("")
    allowed_hosts = modify_settings(ALLOWED_HOSTS={"append": HOST})
    allowed_hosts.enable()
    started = time.monotonic()
    with django_db_blocker.unblock():
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close()
        process = DaphneProcess(
            HOST,
            _application,
            setup=functools.partial(_prepare_server_process, database_name=settings.DATABASES["default"]["NAME"]),
        )
        # Daemonic, so that a pytest that dies without its teardown does not wait for it at exit.
        process.daemon = True
        process.start()
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not process.ready.wait(timeout=0.2):
            if not process.is_alive() or time.monotonic() > deadline:
                detail = process.errors.get(timeout=1)[1] if not process.errors.empty() else SERVER_LOG.read_text()
                raise RuntimeError(f"The live server did not start:\n{detail}")
        log.info("live server on port %s in %.2f s", process.port.value, time.monotonic() - started)
        yield f"http://{HOST}:{process.port.value}"
    finally:
        process.terminate()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
        allowed_hosts.disable()


@pytest.fixture
def live_server_url(asgi_live_server, transactional_db) -> str:
    """The live server's base URL, e.g. http://127.0.0.1:34567 (no trailing slash)."""
    return asgi_live_server


@pytest.fixture(scope="package")
def browser(asgi_live_server) -> Iterator[Browser]:
    """Debian's Chromium, headless, once for this package. It asks for the server only so that
    the server is forked before Playwright starts."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing. `make test` installs it; by hand: "
            "apt-get update && apt-get install -y --no-install-recommends chromium",
            pytrace=False,
        )
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    started = time.monotonic()
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        log.info("Chromium %s launched in %.2f s", chromium.version, time.monotonic() - started)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_context_args() -> dict:
    """Extra arguments for browser.new_context(); override it in a test module to change them,
    e.g. {"bypass_csp": True} for the tests of escaping (see install_xss_tripwire)."""
    return {}


@pytest.fixture
def page(request, browser, live_server_url, browser_context_args) -> Iterator[Page]:
    """A fresh browser context and page for each test, with relative URLs resolved against the
    live server (`page.goto("/")`). On failure: a screenshot, the browser console, page errors
    and what the server logged during the test."""
    context = browser.new_context(
        **{"base_url": live_server_url, "viewport": {"width": 1280, "height": 900}, **browser_context_args}
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    console: list[str] = []

    def on_console(message):
        where = message.location
        source = f" ({where['url']}:{where['lineNumber']})" if where and where.get("url") else ""
        console.append(f"console.{message.type}: {message.text}{source}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: console.append(f"pageerror: {error.stack or error.message}"))
    page.on("requestfailed", lambda req: console.append(f"requestfailed: {req.method} {req.url} {req.failure}"))
    server_log_start = SERVER_LOG.stat().st_size
    yield page

    if request.node.stash.get(_FAILED, False):
        try:
            print(f"screenshot: {screenshot(page, 'failure')}")
        except Exception as exc:  # a crashed page cannot be shot; the console matters more
            print(f"screenshot failed: {exc}")
        print("---- browser console ----")
        print("\n".join(console) or "(nothing)")
        with open(SERVER_LOG, errors="replace") as server_log:
            server_log.seek(server_log_start)
            print("---- live server log ----")
            print(server_log.read() or "(nothing)")
    context.close()


@pytest.fixture
def owner(django_user_model):
    """Who runs Shardwatch: staff in the Admin role (tests/support/personas.py), as an upgrade
    makes the staff that configured sources or triggers before roles."""
    from tests.support.personas import persona_user

    user = persona_user(name="owner", role="Admin", is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def logged_in_page(page, owner, live_server_url) -> Page:
    """A page logged in as `owner` through the real login form, showing the overview."""
    page.goto("/admin/login/?next=/")
    log_in(page, username=owner.username, password=PASSWORD)
    page.wait_for_url(f"{live_server_url}/")
    return page


@pytest.fixture
def persona_page(page, live_server_url):
    """Logs `page` in as a persona of tests/support/personas.py ("viewer", "operator", "admin",
    "outsider") through the real login form; returns the page, showing the overview. Call it at
    most once a test: each persona is a user made for that call."""
    from tests.support.personas import PASSWORD as PERSONA_PASSWORD
    from tests.support.personas import PERSONAS, persona_user

    def logged_in_as(name: str) -> Page:
        user = persona_user(name=name, role=PERSONAS[name])
        page.goto("/admin/login/?next=/")
        log_in(page, username=user.username, password=PERSONA_PASSWORD)
        page.wait_for_url(f"{live_server_url}/")
        return page

    return logged_in_as


def log_in(page: Page, *, username: str, password: str) -> None:
    """Fills in and submits the login form the page shows."""
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("#login-form [type=submit]")


def screenshot(page: Page, name: str) -> Path:
    """Saves a full-page screenshot as test-artifacts/screenshots/<test>-<name>.png."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].rsplit("::", 1)[-1]
    slug = re.sub(r"[^\w.-]+", "_", f"{test}-{name}" if test else name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{slug}.png"
    page.screenshot(path=path, full_page=True)
    return path


def wait_for_socket(page: Page, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
    """Waits until the page's JS has its websocket open (it sets window.websocketConnected)."""
    page.wait_for_function("() => window.websocketConnected === true", timeout=timeout_ms)


def install_xss_tripwire(page: Page) -> None:
    """Defines window.__xss() in every document the page loads from now on, before the page's
    own scripts, so a payload such as `<img src=x onerror=__xss()>` that gets executed flips
    window.__xssFired. Call before page.goto(); check with `xss_fired(page)`.

    The site's Content-Security-Policy blocks inline handlers, so under it a payload never fires
    even when a page fails to escape it, and the test would pass without proving anything. Test
    escaping with the policy bypassed (override `browser_context_args` to return
    {"bypass_csp": True}); test the policy on its own. The tripwire itself is injected by the
    browser and works either way."""
    page.add_init_script("window.__xssFired = false; window.__xss = () => { window.__xssFired = true; };")


def xss_fired(page: Page) -> bool:
    return page.evaluate("() => window.__xssFired === true")


def in_thread(function):
    """Runs function in a thread of its own and returns what it returned.

    Playwright's sync API keeps its event loop marked as running on the test's thread, and
    asyncio refuses to run another loop there: the push after each saved batch (streams.push)
    and channel-layer calls need one."""
    outcome = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "timed out"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def ingest(source) -> int:
    """Reads what was written to the table into the database, as the readers would, pushing
    each saved batch to the source's group. Returns how many records were saved."""
    from tests.support.readers import read_until_idle

    return in_thread(lambda: read_until_idle(source_id=source.pk))

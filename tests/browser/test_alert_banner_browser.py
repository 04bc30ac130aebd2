"""The banner of firing alerts in Chromium: it comes and goes on an open page as alerts fire and
resolve (static/js/alert_banner.js polls GET /api/alerts/firing every 15 s), on the dashboard's
pages and the admin's, and rule names reach it as text."""

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from alerts.evaluation import alerts_evaluate
from alerts.models import Rule
from meters.heartbeats import heartbeat_beat
from meters.models import Heartbeat
from tests.browser.conftest import install_xss_tripwire, screenshot, xss_fired

# One refresh period and some slack.
BANNER_WAIT_MS = 20_000
NAME = "workers <img src=x onerror=__xss()>"


@pytest.fixture
def browser_context_args() -> dict:
    # The policy would stop an unescaped payload anyway; bypass it so the test proves escaping.
    return {"bypass_csp": True}


def reader_alive():
    heartbeat_beat(process="reader@host:1", role=Heartbeat.Role.WORKER, queues=settings.SHARDWATCH_READER_QUEUE)


def test_it_shows_and_takes_away_the_banner_live_on_an_open_page(page, logged_in_page):
    install_xss_tripwire(page)
    page.goto("/triggers/")
    expect(page.locator("#alert-banner")).to_have_count(0)

    # A reader is alive and no worker runs: the worker's alert fires at the first evaluation.
    reader_alive()
    Rule.objects.create(name=NAME, condition=Rule.Condition.NO_WORKER, threshold=30)
    alerts_evaluate(now=timezone.now())

    banner = page.locator("#alert-banner")
    expect(banner).to_contain_text(f"1 alert firing: {NAME} (workers)", timeout=BANNER_WAIT_MS)
    expect(banner.locator("a")).to_have_attribute("href", "/alerts/")
    screenshot(page, "banner-live")
    assert not xss_fired(page)

    heartbeat_beat(process="worker@host:1", role=Heartbeat.Role.WORKER)
    alerts_evaluate(now=timezone.now())
    expect(banner).to_have_count(0, timeout=BANNER_WAIT_MS)


def test_it_shows_the_banner_on_the_admins_pages(page, logged_in_page):
    reader_alive()
    Rule.objects.create(name="workers-down", condition=Rule.Condition.NO_WORKER, threshold=30)
    alerts_evaluate(now=timezone.now())

    page.goto("/admin/")

    expect(page.locator("#alert-banner")).to_contain_text("1 alert firing: workers-down (workers)")
    expect(page.locator("#site-name")).to_contain_text("administration")
    screenshot(page, "admin-banner")

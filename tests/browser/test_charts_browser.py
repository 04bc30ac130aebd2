"""The charts in Chromium: uPlot, served from the pinned npm package, draws each source's and
each trigger's series from /api/series/*, under the site's Content-Security-Policy; a range
click fetches that range and draws it; the overview's own refresh leaves the charts standing."""

from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from meters.store import meter_count, meter_sample, meters_flush
from tests.browser.conftest import screenshot
from tests.dashboard.test_overview import source_create
from workers.models import Trigger

# Collects what the Content-Security-Policy blocked, from before the page's own scripts.
CSP_WATCH = """window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});"""


def csp_violations(page) -> list[str]:
    return page.evaluate("() => window.__cspViolations")


def counted_over_the_last_minutes(source, trigger=None) -> None:
    now = timezone.now()
    for minutes_ago in range(0, 30, 3):
        at = now - timedelta(minutes=minutes_ago)
        meter_count(name="shardwatch_records_read_total", labels={"source": source.pk}, value=10 + minutes_ago, at=at)
        meter_sample(name="shardwatch_iterator_age_seconds", labels={"source": source.pk}, value=0.5 + minutes_ago, at=at)
        if trigger is not None:
            labels = {"trigger": trigger.pk, "outcome": "success"}
            meter_count(name="shardwatch_trigger_invocations_total", labels=labels, value=3, at=at)
    meter_count(name="shardwatch_poll_errors_total", labels={"source": source.pk, "error": "ThrottlingException"}, at=now)
    if trigger is not None:
        labels = {"trigger": trigger.pk, "outcome": "function_error"}
        meter_count(name="shardwatch_trigger_invocations_total", labels=labels, value=1, at=now)
    meters_flush()


def test_it_draws_each_sources_charts_and_switches_their_range(logged_in_page):
    page = logged_in_page
    source = source_create("orders")
    counted_over_the_last_minutes(source)
    page.add_init_script(CSP_WATCH)

    page.goto("/")
    ranges = page.locator("#chart-ranges")
    expect(ranges).to_have_attribute("data-drawn-range", "24h")
    records = page.locator(f"#source-{source.pk} [data-chart='records']")
    lag = page.locator(f"#source-{source.pk} [data-chart='lag']")
    expect(records.locator("canvas")).to_have_count(1)
    expect(lag.locator("canvas")).to_have_count(1)
    expect(records.locator(".u-legend")).to_contain_text("Records per 5 minutes")
    expect(records.locator(".u-legend")).to_contain_text("Poll errors per 5 minutes")
    expect(lag.locator(".u-legend")).to_contain_text("Lag")
    screenshot(page, "charts-overview")

    # The overview's own refresh (every 3 s) merges the page but keeps what uPlot drew.
    records.locator("canvas").evaluate("canvas => { canvas.dataset.mark = 'first'; }")
    updated = page.locator("#sources").get_attribute("data-updated-at")
    expect(page.locator("#sources")).not_to_have_attribute("data-updated-at", updated or "")
    expect(records.locator("canvas[data-mark='first']")).to_have_count(1)

    with page.expect_request(lambda request: "/api/series/sources?range=1h" in request.url):
        ranges.get_by_role("button", name="1h").click()
    expect(ranges).to_have_attribute("data-drawn-range", "1h")
    expect(ranges.get_by_role("button", name="1h")).to_have_attribute("aria-pressed", "true")
    expect(ranges.get_by_role("button", name="24h")).to_have_attribute("aria-pressed", "false")
    expect(records.locator(".u-legend")).to_contain_text("Records per minute")
    expect(records.locator("canvas")).to_have_count(1)
    assert csp_violations(page) == []
    screenshot(page, "charts-overview-1h")

    # The choice is in the page's URL: a reload keeps it.
    assert page.url.endswith("/?range=1h")
    page.reload()
    expect(ranges).to_have_attribute("data-drawn-range", "1h")
    expect(ranges.get_by_role("button", name="1h")).to_have_attribute("aria-pressed", "true")


def test_it_draws_each_triggers_invocations_and_switches_their_range(logged_in_page):
    page = logged_in_page
    source = source_create("orders")
    trigger = Trigger.objects.create(
        name="mailer", source=source, target=Trigger.Target.PYTHON, handler="tests.handlers.triggers.record_batches"
    )
    counted_over_the_last_minutes(source, trigger)
    page.add_init_script(CSP_WATCH)

    page.goto("/triggers/")
    ranges = page.locator("#chart-ranges")
    expect(ranges).to_have_attribute("data-drawn-range", "24h")
    chart = page.locator(f"[data-chart='invocations'][data-id='{trigger.pk}']")
    expect(chart.locator("canvas")).to_have_count(1)
    legend = chart.locator(".u-legend")
    for label in ("Success", "Function error", "Timeout", "Partial failure", "Discarded"):
        expect(legend).to_contain_text(f"{label} per 5 minutes")
    expect(legend).to_contain_text("Did not succeed")
    screenshot(page, "charts-triggers")

    with page.expect_request(lambda request: "/api/series/triggers?range=6h" in request.url):
        ranges.get_by_role("button", name="6h").click()
    expect(ranges).to_have_attribute("data-drawn-range", "6h")
    expect(legend).to_contain_text("Success per minute")
    assert csp_violations(page) == []

"""The Streams overview in Chromium: the server renders every source, then overview.js polls
/api/sources and rebuilds the page from the same partials (copied from <template> elements), so
a refresh that brings nothing new changes nothing on the page."""

import re
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from streams.models import Gap, Shard, Stream, StreamSource
from tests.browser.conftest import screenshot
from tests.dashboard.test_overview import lineage_source, records_create, shard_create, source_create, stream_create

PAYLOAD = '<img src=x onerror=__xss()>"><script>__xss()</script>'


READER_A = "ip-10-0-0-7:812"
READER_B = f"{PAYLOAD}:9"


def sources_of_every_kind(now):
    """A source in trouble (an error, gaps, a shard lineage with errors, leases and one shard
    finished long ago), and a disabled one with no stream yet. Two readers hold two of its three
    readable shards; the third has had no reader since its lease ran out two minutes ago."""
    source = lineage_source(now=now)
    StreamSource.objects.filter(pk=source.pk).update(
        status=StreamSource.Status.UNREACHABLE, last_error=f"Could not connect: {PAYLOAD}", last_error_at=now
    )
    stream = Stream.objects.get(source=source)
    lease = {"lease_expires_at": now + timedelta(minutes=5)}
    Shard.objects.filter(shard_id="shardId-right").update(
        lease_owner=f"{READER_A}/aa", last_polled_by=READER_A, last_polled_at=now - timedelta(seconds=2), **lease
    )
    Shard.objects.filter(shard_id="shardId-orphan").update(
        lease_owner=f"{READER_B}/bb", last_polled_by=READER_B, last_polled_at=now - timedelta(seconds=4), **lease
    )
    Shard.objects.filter(shard_id="shardId-left").update(
        lease_owner="ip-10-0-0-9:5/cc", lease_expires_at=now - timedelta(minutes=2)
    )
    shard_create(stream, "shardId-ancient", state=Shard.State.FINISHED, finished_at=now - timedelta(hours=30))
    grandchild = Shard.objects.get(shard_id="shardId-grandchild")
    # Received in the last minutes, written hours before: records in the last hour, and a lag far
    # from a minute's turn, so the server and the script say the same "3 hours" in between.
    received = [now - timedelta(minutes=3), now - timedelta(minutes=3), now - timedelta(minutes=10)]
    records_create(grandchild, received=received, created=timedelta(hours=3, seconds=30))
    Gap.objects.create(source=source, shard=grandchild, after_sequence_number="000000000000000000042", reason=PAYLOAD)
    Gap.objects.create(source=source, reason="The stream was disabled")
    source_create("archive", enabled=False, endpoint_url="http://localhost:8000", status=StreamSource.Status.PENDING)
    return source


def same_moments(markup: str) -> str:
    """The markup with each <time datetime> to the second: the template spells it as Django's
    "c" format does, the JSON API to the millisecond with a Z."""
    return re.sub(r'datetime="([^".+Z]+)[^"]*"', r'datetime="\1"', markup)


# The markup of an element, its chart boxes emptied: what uPlot draws in them is not the
# page's markup, and the rebuild leaves it alone (data-morph-keep).
MARKUP = """window.__markup = (id, outer) => {
    const node = document.getElementById(id).cloneNode(true);
    for (const box of node.querySelectorAll("[data-chart]")) box.replaceChildren();
    return outer ? node.outerHTML : node.innerHTML;
};"""

# Keeps what the server rendered, before overview.js first rebuilds it.
KEEP_SERVER_RENDER = MARKUP + """document.addEventListener("DOMContentLoaded", () => {
    window.__serverRendered = {sources: window.__markup("sources"), readers: window.__markup("readers", true)};
});"""


def assert_rebuilt_as_rendered(page) -> None:
    """What overview.js built from /api/sources is the markup the server rendered."""
    rendered = page.evaluate("() => window.__serverRendered")
    rebuilt = page.evaluate("() => ({sources: window.__markup('sources'), readers: window.__markup('readers', true)})")
    assert same_moments(rebuilt["readers"]) == same_moments(rendered["readers"])
    assert same_moments(rebuilt["sources"]) == same_moments(rendered["sources"])


def test_it_rebuilds_exactly_what_the_server_rendered(logged_in_page):
    page = logged_in_page
    source = sources_of_every_kind(timezone.now())
    page.add_init_script(KEEP_SERVER_RENDER)

    page.goto("/")
    expect(page.locator("#sources")).to_have_attribute("data-updated-at", re.compile(r"\S"))

    assert_rebuilt_as_rendered(page)
    readers = page.locator("#readers")
    expect(readers.locator(".readers-head")).to_have_text("Readers2 readers · 3 shards · 1 waiting for a reader")
    expect(readers.locator(".alert-error strong")).to_have_text(
        f"1 shard has no reader: is the reader worker running? (celery -A config worker -Q {settings.SHARDWATCH_READER_QUEUE})"
    )
    expect(readers.locator("tbody tr td:first-child")).to_have_text([PAYLOAD + ":9", READER_A])
    expect(readers.locator("tbody tr td:nth-child(2)")).to_have_text(["1", "1"])
    expect(page.locator(f"#source-{source.pk} .shard-error")).to_have_text("Error (3 in a row): ThrottlingException: slow down")
    expect(page.locator(f"#source-{source.pk} .gaps li")).to_have_count(2)
    expect(page.locator(f"#source-{source.pk} .gaps")).to_contain_text(PAYLOAD)
    assert page.locator("#sources img, #sources script, #readers img, #readers script").count() == 0
    expect(page.locator(f"#source-{source.pk} .metric:has(dt:text-is('Records, last hour')) .metric-value")).to_have_text("3")
    screenshot(page, "overview")

    # What changes shows at the next refresh, without a reload: a new shard, and a reader that
    # takes the shard that was waiting, which ends the warning.
    shard_create(Stream.objects.get(source=source), "shardId-new", "shardId-right", last_polled_by="worker-3:1")
    Shard.objects.filter(shard_id="shardId-left").update(
        lease_owner=f"{READER_A}/aa", lease_expires_at=timezone.now() + timedelta(minutes=5), last_polled_by=READER_A
    )
    expect(page.locator("[data-key='shard-shardId-right'] [data-key='shard-shardId-new']")).to_contain_text("worker-3:1")
    expect(readers.locator(".readers-head")).to_have_text("Readers2 readers · 3 shards")
    expect(readers.locator(".alert-error")).to_have_count(0)
    expect(readers.locator("tbody tr td:nth-child(2)")).to_have_text(["1", "2"])
    screenshot(page, "overview-readers")
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1


def mapping(number, function, state="Enabled", **fields):
    return {
        "uuid": f"00000000-0000-0000-0000-{number:012d}",
        "function_arn": f"arn:aws:lambda:eu-west-1:123456789012:function:{function}",
        "state": state,
        "batch_size": 100,
        "starting_position": "LATEST",
        "last_modified": "2026-03-04T10:15:30.250000+00:00",
        **fields,
    }


def streams_with_every_kind_of_consumers(now):
    """One stream for each way its event source mappings can have been looked up, and one
    crowded stream whose mappings carry markup in their names."""
    source = source_create("orders")
    lookup = Stream.MappingsLookup
    crowded = [
        mapping(1, "orders-audit"),
        mapping(2, f"{PAYLOAD}:live", state="Updating", starting_position=""),
        mapping(3, "orders-paused", state="Disabled", last_modified="", batch_size=None),
    ]
    kinds = {
        "crowded": {"lambda_mappings_lookup": lookup.LISTED, "lambda_mappings": crowded},
        "one-mapping": {"lambda_mappings_lookup": lookup.LISTED, "lambda_mappings": [mapping(4, "orders-search")]},
        "no-mappings": {"lambda_mappings_lookup": lookup.LISTED},
        "denied": {"lambda_mappings_lookup": lookup.DENIED, "lambda_mappings_error": f"AccessDeniedException: {PAYLOAD}"},
        "local": {"lambda_mappings_lookup": lookup.NO_LAMBDA},
        "pending": {},
    }
    streams = {}
    for label, fields in kinds.items():
        streams[label] = stream_create(source, label=label)
        checked = {"lambda_mappings_checked_at": now} if fields else {}
        Stream.objects.filter(pk=streams[label].pk).update(**fields, **checked)
    return source, streams


def test_it_rebuilds_the_other_consumers_of_each_stream_exactly(logged_in_page):
    page = logged_in_page
    now = timezone.now()
    source, streams = streams_with_every_kind_of_consumers(now)
    page.add_init_script(KEEP_SERVER_RENDER)

    page.goto("/")
    expect(page.locator("#sources")).to_have_attribute("data-updated-at", re.compile(r"\S"))

    assert_rebuilt_as_rendered(page)
    expect(page.locator("#readers")).to_contain_text("0 readers · 0 shardsNo reader holds a shard.")
    crowded = page.locator(f"[data-key='stream-{streams['crowded'].pk}'] .consumers")
    expect(crowded.locator(".consumers-count")).to_contain_text("3(Shardwatch and 2 event source mappings)")
    expect(crowded.locator(".alert-error")).to_contain_text(f"read it: orders-audit, {PAYLOAD}:live.")
    expect(crowded.locator(".mappings li")).to_have_count(3)
    denied = page.locator(f"[data-key='stream-{streams['denied'].pk}'] .consumers")
    expect(denied).to_contain_text("unknown: the identity lacks lambda:ListEventSourceMappings")
    expect(denied.locator(".consumers-error")).to_have_text(f"AccessDeniedException: {PAYLOAD}")
    assert page.locator("#sources .consumers .alert-error").count() == 1
    assert page.locator("#sources img, #sources script").count() == 0
    screenshot(page, "overview-consumers")

    # A look-up that finds more readers shows at the next refresh, without a reload.
    Stream.objects.filter(pk=streams["denied"].pk).update(
        lambda_mappings_lookup=Stream.MappingsLookup.LISTED,
        lambda_mappings_error="",
        lambda_mappings=[mapping(5, "orders-mailer"), mapping(6, "orders-export", state="Creating")],
    )
    expect(denied.locator(".alert-error")).to_contain_text("read it: orders-mailer, orders-export.")
    expect(denied.locator(".consumers-error")).to_have_count(0)
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1

"""The live feed in a real browser, against the live ASGI server, the Redis channel layer and
DynamoDB Local. The shard readers do not run as Celery tasks here: `ingest` drives them in this
process, and each saved batch is pushed over the real channel layer to the page's socket."""

import asyncio
import re
from urllib.parse import urlencode

import pytest
from channels.layers import get_channel_layer
from playwright.sync_api import expect

from streams.models import ChangeRecord
from streams.records import masking_load
from streams.sources import source_add
from tests.browser.conftest import in_thread, ingest, install_xss_tripwire, screenshot, wait_for_socket, xss_fired

ROWS = "#feed-rows tr.feed-row"


def drop_sockets(source) -> None:
    """Makes the server end every feed socket listening to this source (FeedConsumer.feed_close)."""

    async def send():
        await get_channel_layer().group_send(source.group_name, {"type": "feed.close"})

    in_thread(lambda: asyncio.run(send()))


@pytest.fixture
def orders(make_table, dynamodb):
    """A watched table; `orders.put(pk, **attributes)` writes an item to DynamoDB Local."""
    table = make_table(range_key=False, prefix="orders")
    source = source_add(table_name=table, region="us-east-1")

    def put(pk, **attributes):
        item = {"pk": {"S": pk}, **{name: {"S": value} for name, value in attributes.items()}}
        dynamodb.put_item(TableName=table, Item=item)

    def delete(pk):
        dynamodb.delete_item(TableName=table, Key={"pk": {"S": pk}})

    source.put, source.delete = put, delete
    return source


def rendered_ids(page) -> list[int]:
    return [int(value) for value in page.locator(ROWS).evaluate_all("rows => rows.map(row => row.dataset.id)")]


def stored_ids(**lookups) -> list[int]:
    return list(ChangeRecord.objects.filter(**lookups).order_by("-id").values_list("id", flat=True))


def record_states(page) -> None:
    """Starts recording what the connection-state label says, in order."""
    page.evaluate(
        """() => {
            const label = document.getElementById("feed-state");
            window.__feedStates = [];
            new MutationObserver(() => window.__feedStates.push(label.textContent))
                .observe(label, {childList: true, characterData: true, subtree: true});
        }"""
    )


def states(page) -> list[str]:
    """What the state label said since record_states, repeats left out."""
    said = page.evaluate("() => window.__feedStates")
    return [text for number, text in enumerate(said) if number == 0 or said[number - 1] != text]


def write_many(dynamodb, source, numbers) -> None:
    numbers = list(numbers)
    for start in range(0, len(numbers), 25):
        requests = [
            {"PutRequest": {"Item": {"pk": {"S": f"BULK#{number:04d}"}, "n": {"N": str(number)}}}}
            for number in numbers[start : start + 25]
        ]
        dynamodb.batch_write_item(RequestItems={source.table_name: requests})


def open_feed(page, path="/feed/"):
    page.goto(path)
    wait_for_socket(page)
    expect(page.locator("#feed-state")).to_have_text("live")


def test_it_shows_a_new_write_without_a_reload(logged_in_page, orders):
    page = logged_in_page
    orders.put("ORDER#1", status="PENDING")
    ingest(orders)
    open_feed(page)
    expect(page.locator(ROWS)).to_have_count(1)
    loads = []
    page.on("load", lambda _: loads.append(page.url))

    orders.put("ORDER#2", status="PENDING")
    orders.put("ORDER#1", status="SHIPPED", tracking="TRK-42")
    orders.delete("ORDER#2")
    ingest(orders)

    expect(page.locator(ROWS)).to_have_count(4)
    assert loads == []
    assert rendered_ids(page) == stored_ids(source=orders)
    newest = page.locator(ROWS).first
    expect(newest.locator(".event")).to_have_text("REMOVE")
    expect(newest.locator(".feed-key-cell")).to_have_text("pk=ORDER#2")
    shipped = page.locator(ROWS).nth(1)
    expect(shipped.locator(".feed-summary")).to_have_text('status: "PENDING" → "SHIPPED", +tracking')
    expect(shipped.locator(".feed-table-name")).to_have_text(orders.table_name)
    modify = ChangeRecord.objects.get(source=orders, event_name="MODIFY")
    expect(shipped.locator("a")).to_have_attribute("href", f"/records/{modify.pk}/")
    colours = {
        name: page.locator(f"{ROWS} .event-{name.lower()}").first.evaluate("e => getComputedStyle(e).backgroundColor")
        for name in ("INSERT", "MODIFY", "REMOVE")
    }
    assert len(set(colours.values())) == 3, colours
    screenshot(page, "live-rows")


def test_it_applies_the_filter_to_live_rows_and_buffers_while_paused(logged_in_page, orders):
    page = logged_in_page
    orders.put("ORDER#1", status="PENDING")
    ingest(orders)
    open_feed(page)

    # Ticking a box applies the filter at once and puts it in the address bar.
    with page.expect_navigation():
        page.get_by_label("MODIFY").check()
    expect(page).to_have_url(re.compile(r"/feed/\?event=MODIFY$"))
    wait_for_socket(page)
    expect(page.locator(ROWS)).to_have_count(0)
    orders.put("ORDER#2", status="PENDING")  # an INSERT: not for this filter
    ingest(orders)
    orders.put("ORDER#1", status="PACKED")
    ingest(orders)
    # Batches arrive in order on the socket: once the MODIFY is shown, the INSERT was skipped.
    expect(page.locator(ROWS)).to_have_count(1)
    expect(page.locator(f"{ROWS} .event")).to_have_text(["MODIFY"])

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#feed-state")).to_have_text("paused")
    orders.put("ORDER#1", status="SHIPPED")
    orders.put("ORDER#3", status="PENDING")  # an INSERT again
    orders.put("ORDER#2", status="CANCELLED")
    ingest(orders)

    expect(page.locator("#feed-new")).to_have_text("2 new")
    expect(page.locator(ROWS)).to_have_count(1)
    screenshot(page, "paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(ROWS)).to_have_count(3)
    expect(page.locator("#feed-new")).to_be_hidden()
    expect(page.locator("#feed-state")).to_have_text("live")
    assert rendered_ids(page) == stored_ids(source=orders, event_name="MODIFY")


def test_it_loses_no_row_when_the_server_drops_the_socket(logged_in_page, orders):
    page = logged_in_page
    orders.put("ORDER#0", status="PENDING")
    ingest(orders)
    open_feed(page)
    sockets, catch_ups = [], []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.on("response", lambda response: catch_ups.append(response) if "since=" in response.url else None)
    for number in range(1, 6):
        orders.put(f"ORDER#{number}", status="PENDING")

    record_states(page)

    drop_sockets(orders)
    page.wait_for_function("() => window.websocketConnected === false")
    ingest(orders)  # saved, and pushed to nobody: no socket is listening
    missed = stored_ids(source=orders)[:5]

    wait_for_socket(page)
    assert states(page) == ["reconnecting in 1s", "connecting", "catching up", "live"]
    expect(page.locator(ROWS)).to_have_count(6)
    for number in range(6, 9):
        orders.put(f"ORDER#{number}", status="PENDING")
    ingest(orders)

    expect(page.locator(ROWS)).to_have_count(9)
    assert rendered_ids(page) == stored_ids(source=orders)
    assert len(sockets) == 1 and sockets[0].endswith("/ws/feed/")
    [catch_up] = catch_ups
    assert f"since={stored_ids(source=orders)[-1]}" in catch_up.url
    assert sorted(row["id"] for row in catch_up.json()["records"]) == sorted(missed)
    screenshot(page, "after-reconnect")


def test_it_shows_item_data_as_text_and_runs_none_of_it(logged_in_page, orders, dynamodb):
    page = logged_in_page
    install_xss_tripwire(page)
    open_feed(page)
    img = "<img src=x onerror=__xss()>"
    script = '"><script>__xss()</script>'

    dynamodb.put_item(
        TableName=orders.table_name,
        Item={"pk": {"S": img}, script: {"S": "javascript:__xss()"}, "status": {"S": img}},
    )
    dynamodb.put_item(TableName=orders.table_name, Item={"pk": {"S": script}, "link": {"S": "javascript:__xss()"}})
    dynamodb.put_item(TableName=orders.table_name, Item={"pk": {"S": "javascript:__xss()"}})
    dynamodb.update_item(
        TableName=orders.table_name,
        Key={"pk": {"S": img}},
        UpdateExpression="SET #s = :v",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":v": {"S": script}},
    )
    ingest(orders)

    expect(page.locator(ROWS)).to_have_count(4)
    for shown in (page, reload(page)):
        expect(shown.locator(ROWS)).to_have_count(4)
        expect(shown.locator(".feed-key-cell", has_text=f"pk={img}").first).to_be_visible()
        expect(shown.locator(".feed-key-cell", has_text=f"pk={script}")).to_be_visible()
        expect(shown.locator(".feed-key-cell", has_text="pk=javascript:__xss()")).to_be_visible()
        expect(shown.locator(".feed-summary", has_text=f'status: "{img}" → ')).to_be_visible()
        assert shown.locator("#feed img, #feed script, #feed-rows a[href^='javascript']").count() == 0
        hrefs = shown.locator(f"{ROWS} a").evaluate_all("links => links.map(link => link.getAttribute('href'))")
        assert all(re.fullmatch(r"/records/\d+/", href) for href in hrefs), hrefs
        assert not xss_fired(shown)
    screenshot(page, "payloads-as-text")


def reload(page):
    page.reload()
    wait_for_socket(page)
    return page


def test_it_stops_and_says_why_when_the_filter_is_not_valid(logged_in_page, orders):
    page = logged_in_page
    orders.put("ORDER#1", status="PENDING")
    ingest(orders)
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))

    page.goto("/feed/?event=UPSERT")

    expect(page.get_by_role("alert")).to_have_text(re.compile(r"event must be INSERT, MODIFY or REMOVE, not UPSERT"))
    expect(page.locator("#feed-state")).to_have_text("stopped")
    expect(page.locator(ROWS)).to_have_count(0)
    expect(page.get_by_role("link", name="NDJSON")).to_have_count(0)
    assert sockets == []
    screenshot(page, "bad-filter")


def test_it_refuses_an_anonymous_socket(page, orders, live_server_url):
    page.goto("/feed/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/feed/$"))

    outcome = page.evaluate(
        """url => new Promise(resolve => {
            const socket = new WebSocket(url);
            const received = [];
            let opened = false;
            socket.addEventListener("open", () => {
                opened = true;
                socket.send(JSON.stringify({type: "subscribe", filter: {}}));
            });
            socket.addEventListener("message", event => received.push(event.data));
            socket.addEventListener("close", event => resolve({opened, received, code: event.code}));
        })""",
        live_server_url.replace("http://", "ws://") + "/ws/feed/",
    )

    assert outcome == {"opened": False, "received": [], "code": 1006}  # the handshake was refused


def test_it_keeps_at_most_500_rows_and_pages_back_through_older_ones(logged_in_page, orders, dynamodb):
    page = logged_in_page
    write_many(dynamodb, orders, range(120))
    ingest(orders)
    open_feed(page)
    older = page.get_by_role("button", name="Load older")
    expect(page.locator(ROWS)).to_have_count(100)

    older.click()

    expect(page.locator(ROWS)).to_have_count(120)
    expect(page.locator("#feed-older-status")).to_have_text("No older records.")
    expect(older).to_be_hidden()
    # Reading back pauses the feed, or new rows would push the older ones out again.
    expect(page.locator("#feed-state")).to_have_text("paused")
    assert rendered_ids(page) == stored_ids(source=orders)
    page.get_by_role("button", name="Resume").click()

    write_many(dynamodb, orders, range(120, 620))
    ingest(orders)

    expect(page.locator(ROWS).first).to_have_attribute("data-id", str(stored_ids(source=orders)[0]))
    expect(page.locator(ROWS)).to_have_count(500)
    assert rendered_ids(page) == stored_ids(source=orders)[:500]
    older.click()
    expect(page.locator(ROWS)).to_have_count(600)
    assert rendered_ids(page) == stored_ids(source=orders)[:600]


def test_it_keeps_up_with_500_records_a_second(logged_in_page, orders):
    page = logged_in_page
    open_feed(page)
    # Each render pass changes the list in one go, so the observer hears of it once.
    page.evaluate(
        """() => {
            window.__renders = [];
            new MutationObserver(() => window.__renders.push(performance.now()))
                .observe(document.getElementById("feed-rows"), {childList: true});
        }"""
    )
    first_id, batches, per_batch = 10_000_000, 150, 10

    async def publish():
        layer = get_channel_layer()
        for batch in range(batches):
            start = first_id + batch * per_batch
            rows = [feed_row(orders, record_id) for record_id in range(start, start + per_batch)]
            message = {"type": "records.batch", "source_id": orders.pk, "records": rows, "last_id": rows[-1]["id"]}
            await layer.group_send(orders.group_name, message)
            await asyncio.sleep(0.02)

    # 1,500 rows in about three seconds, a batch every 20 ms.
    in_thread(lambda: asyncio.run(publish()))

    last_id = first_id + batches * per_batch - 1
    expect(page.locator(ROWS).first).to_have_attribute("data-id", str(last_id))
    expect(page.locator(ROWS)).to_have_count(500)
    assert rendered_ids(page) == list(range(last_id, last_id - 500, -1))
    renders = page.evaluate("() => window.__renders")
    spacing = [later - earlier for earlier, later in zip(renders, renders[1:])]
    # Rendered in passes about 100 ms apart, not once per message.
    assert 3 <= len(renders) <= batches // 3, renders
    assert min(spacing) > 50, spacing


def feed_row(source, record_id: int) -> dict:
    """A row as streams.rows.feed_row makes it, for a record that is only pushed."""
    return {
        "id": record_id, "source_id": source.pk, "table": source.table_name, "event_name": "MODIFY",
        "key": f"pk=LOAD#{record_id}", "item_key": "{}", "partition_key": f"LOAD#{record_id}",
        "summary": f'n: {record_id - 1} → {record_id}', "diff_complete": True, "paths": ["n"],
        "approximate_creation_time": "2026-01-01T00:00:00+00:00", "sequence_number": str(record_id),
        "is_ttl_delete": False, "decode_error": "",
    }


def test_it_builds_rows_as_the_server_renders_them(logged_in_page, orders, dynamodb):
    page = logged_in_page
    orders.put("ORDER#1", status="PENDING")
    orders.delete("ORDER#1")
    ingest(orders)
    removal = ChangeRecord.objects.get(source=orders, event_name="REMOVE")
    ChangeRecord.objects.filter(pk=removal.pk).update(is_ttl_delete=True, decode_error="KeyError: '<b>Keys</b>'")
    write_many(dynamodb, orders, range(100))
    ingest(orders)
    open_feed(page)
    orders.put("ORDER#2", status="PENDING")
    orders.put("ORDER#2", status="SHIPPED", tracking="TRK-42")
    ingest(orders)
    expect(page.locator(ROWS)).to_have_count(102)

    # Two rows came over the socket and two from "Load older": the script built all four.
    page.get_by_role("button", name="Load older").click()
    expect(page.locator(ROWS)).to_have_count(104)
    built = {
        key: page.locator(f"{ROWS}:has(.feed-key-cell:text-is('pk={key}'))").evaluate_all("rows => rows.map(row => row.outerHTML)")
        for key in ("ORDER#1", "ORDER#2")
    }
    expect(page.locator(f"{ROWS} .badge-ttl")).to_have_count(1)

    for key, rows in built.items():
        page.goto(f"/feed/?key={key.replace('#', '%23')}")
        wait_for_socket(page)
        assert page.locator(ROWS).evaluate_all("rows => rows.map(row => row.outerHTML)") == rows


def test_it_applies_an_event_pattern_to_live_rows(logged_in_page, orders):
    page = logged_in_page
    pattern = '{"dynamodb": {"NewImage": {"status": {"S": ["SHIPPED"]}}}}'
    open_feed(page, "/feed/?" + urlencode({"pattern": pattern}))

    orders.put("ORDER#1", status="PENDING")
    orders.put("ORDER#2", status="SHIPPED")
    ingest(orders)
    orders.put("ORDER#3", status="SHIPPED")
    ingest(orders)

    expect(page.locator(ROWS)).to_have_count(2)
    expect(page.locator(f"{ROWS} .feed-key-cell")).to_have_text(["pk=ORDER#3", "pk=ORDER#2"])


def test_it_shows_a_viewer_pushed_rows_masked(persona_page, orders):
    for path, mode in (("status", "redact"), ("email", "hash"), ("card", "remove")):
        orders.masking_rules.create(path=path, mode=mode)
    masking = masking_load()
    orders.put("ORDER#1", status="PENDING", email="ada@example.com")
    ingest(orders)
    page = persona_page("viewer")
    open_feed(page)
    expect(page.locator(ROWS)).to_have_count(1)
    expect(page.locator("#unmask-on")).to_have_count(0)

    orders.put("ORDER#1", status="SHIPPED", email="grace@example.com", card="4111111111111111")
    ingest(orders)

    expect(page.locator(ROWS)).to_have_count(2)
    pushed = page.locator(ROWS).first
    was, now = (masking.value_hash({"S": email})["S"] for email in ("ada@example.com", "grace@example.com"))
    expect(pushed.locator(".feed-summary")).to_have_text(f"email: {was} → {now}, status: ••• → •••")
    expect(pushed.locator(".feed-key-cell")).to_have_text("pk=ORDER#1")
    for hidden in ("SHIPPED", "grace", "4111", "card"):
        expect(page.locator("#feed")).not_to_contain_text(hidden)
    # The row the socket brought is the row the server renders for this viewer.
    built = pushed.evaluate("row => row.outerHTML")
    reload(page)
    assert page.locator(ROWS).first.evaluate("row => row.outerHTML") == built
    screenshot(page, "viewer-masked-rows")

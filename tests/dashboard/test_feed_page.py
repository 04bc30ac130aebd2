"""The live feed page as the server renders it: rows for the filter in the URL, the filter form,
its errors, permalinks and export links. What the page does in a browser is in
tests/browser/test_feed_browser.py."""

import html
import json
import re
from urllib.parse import parse_qsl, urlencode

import pytest
from asgiref.sync import async_to_sync

from streams.models import ChangeRecord
from streams.sources import source_add
from tests.support.readers import read_until_idle

pytestmark = pytest.mark.django_db

XSS_KEY = '<img src=x onerror=__xss()>"><script>__xss()</script>'


@pytest.fixture
def orders(make_table, dynamodb):
    """An orders table: two orders placed, one shipped, one cancelled (deleted)."""
    table = make_table(range_key=False, prefix="orders")
    source = source_add(table_name=table, region="us-east-1")
    for pk in ("ORDER#1", "ORDER#2"):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": pk}, "status": {"S": "PENDING"}})
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "ORDER#1"}},
        UpdateExpression="SET #s = :s, tracking = :t",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "SHIPPED"}, ":t": {"S": "TRK-42"}},
    )
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "ORDER#2"}})
    assert read_until_idle(source_id=source.pk) == 4
    return source


@pytest.fixture
def customers(make_table, dynamodb):
    """A second table, so there is something to filter out by source."""
    table = make_table(range_key=False, prefix="customers")
    source = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "CUSTOMER#7"}, "name": {"S": "Ada"}})
    assert read_until_idle(source_id=source.pk) == 1
    return source


def rendered_ids(response) -> list[int]:
    """The record ids of the feed's rows, top to bottom."""
    body = response.content.decode()
    rows = body.split('<tbody id="feed-rows">', 1)[1].split("</tbody>", 1)[0]
    return [int(found) for found in re.findall(r'<tr class="feed-row" data-id="(\d+)">', rows)]


def feed_data(response, name: str) -> str:
    """A data-* attribute of the feed's container, unescaped."""
    found = re.search(rf'<section id="feed"[^>]*\sdata-{name}="([^"]*)"', response.content.decode())
    assert found, f"no data-{name} on #feed"
    return html.unescape(found.group(1))


def link(response, element_id: str) -> str:
    found = re.search(rf'<a id="{element_id}" href="([^"]*)"', response.content.decode())
    assert found, f"no link #{element_id}"
    return html.unescape(found.group(1))


def ids_of(**lookups) -> list[int]:
    return list(ChangeRecord.objects.filter(**lookups).order_by("-id").values_list("id", flat=True))


def test_it_sends_anonymous_visitors_to_the_login_page(client, orders):
    response = client.get("/feed/?event=MODIFY")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/feed/%3Fevent%3DMODIFY"


def test_it_renders_the_newest_rows_first_with_a_link_to_each_record(owner, orders):
    response = owner.get("/feed/")

    assert response.status_code == 200
    assert rendered_ids(response) == ids_of(source=orders)
    body = response.content.decode()
    for record in ChangeRecord.objects.filter(source=orders):
        assert f'href="/records/{record.pk}/"' in body
    assert '<span class="event event-insert">INSERT</span>' in body
    assert '<span class="event event-modify">MODIFY</span>' in body
    assert '<span class="event event-remove">REMOVE</span>' in body
    assert html.escape('status: "PENDING" → "SHIPPED", +tracking') in body
    assert f"<td class=\"feed-table-name\">{orders.table_name}</td>" in body
    assert "<td class=\"feed-key-cell\">pk=ORDER#1</td>" in body


def test_it_renders_only_the_rows_the_filter_matches(owner, orders, customers):
    modify = owner.get("/feed/?event=MODIFY")
    by_key = owner.get("/feed/?key=ORDER%232&key_match=equals")
    by_prefix = owner.get("/feed/?key=ORDER&key_match=prefix&event=INSERT")
    by_path = owner.get("/feed/?path=tracking")
    by_text = owner.get("/feed/?q=ada")
    by_source = owner.get(f"/feed/?source={customers.pk}")

    assert rendered_ids(modify) == ids_of(event_name="MODIFY")
    assert rendered_ids(by_key) == ids_of(partition_key="ORDER#2")
    assert len(rendered_ids(by_key)) == 2
    assert rendered_ids(by_prefix) == ids_of(source=orders, event_name="INSERT")
    assert rendered_ids(by_path) == ids_of(event_name="MODIFY")
    assert rendered_ids(by_text) == ids_of(source=customers)
    assert rendered_ids(by_source) == ids_of(source=customers)


def test_it_shows_a_bad_filter_and_no_rows(owner, orders):
    response = owner.get("/feed/?event=UPSERT&key=ORDER%231")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'role="alert"' in body
    assert "The filter is not valid: event must be INSERT, MODIFY or REMOVE, not UPSERT." in body
    assert rendered_ids(response) == []
    # The page neither streams nor exports everything in place of what was asked for.
    assert feed_data(response, "filter-valid") == "false"
    assert 'id="feed-export-ndjson"' not in body
    # What was typed stays in the form, to be corrected.
    assert 'name="key" value="ORDER#1"' in body


def test_it_shows_a_bad_time_in_the_filter(owner, orders):
    response = owner.get("/feed/?from=yesterday")

    assert "from must be a date and time such as 2026-01-31T13:45" in response.content.decode()
    assert 'name="from" value="yesterday"' in response.content.decode()
    assert rendered_ids(response) == []


def test_it_round_trips_the_filter_through_its_permalink(owner, orders):
    typed = owner.get(f"/feed/?event=modify&event=INSERT&key=+ORDER+&key_match=prefix&path=status&source={orders.pk}&q=")

    canonical = feed_data(typed, "filter-query")
    assert parse_qsl(canonical) == [
        ("source", str(orders.pk)), ("event", "INSERT"), ("event", "MODIFY"),
        ("key", "ORDER"), ("key_match", "prefix"), ("path", "status"),
    ]
    again = owner.get(f"/feed/?{canonical}")
    assert feed_data(again, "filter-query") == canonical
    # An INSERT adds every path, status among them.
    assert rendered_ids(again) == rendered_ids(typed) == ids_of(event_name__in=["INSERT", "MODIFY"])
    body = again.content.decode()
    assert f'<option value="{orders.pk}" selected>' in body
    assert 'value="INSERT" checked' in body and 'value="MODIFY" checked' in body
    assert 'value="REMOVE" checked' not in body
    assert '<option value="prefix" selected>' in body
    assert 'name="key" value="ORDER"' in body
    assert 'name="path" value="status"' in body


def test_it_gives_the_page_script_its_urls_and_filter_in_data_attributes(owner, orders):
    response = owner.get("/feed/?event=REMOVE")

    assert feed_data(response, "api-url") == "/api/records"
    assert feed_data(response, "ws-path") == "/ws/feed/"
    assert feed_data(response, "record-url") == "/records/0/"
    assert feed_data(response, "filter-query") == "event=REMOVE"
    assert feed_data(response, "filter-valid") == "true"
    body = response.content.decode()
    assert re.findall(r"<script\b[^>]*>", body) == [
        '<script type="module" src="/static/js/alert_banner.js">', '<script src="/static/js/feed.js" defer>']
    assert re.findall(r"<[a-z]+\s[^>]*\son[a-z]+=", body) == []  # no inline event handlers


def test_it_serves_the_page_script(owner):
    response = owner.get("/static/js/feed.js")

    assert response.status_code == 200
    script = b"".join(response.streaming_content).decode()
    assert "window.websocketConnected" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


@pytest.mark.parametrize("name", ["dom", "http", "live_socket"])
def test_it_serves_the_shared_modules_as_javascript(owner, name):
    # Page scripts import these with import(), which runs only what is served as JavaScript.
    response = owner.get(f"/static/js/lib/{name}.js")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    script = b"".join(response.streaming_content).decode()
    assert "export function" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script


def test_it_carries_the_filter_in_the_export_links(owner, orders):
    response = owner.get(f"/feed/?source={orders.pk}&event=INSERT&key=ORDER%231")

    query = urlencode([("source", orders.pk), ("event", "INSERT"), ("key", "ORDER#1"), ("key_match", "equals")])
    assert link(response, "feed-export-ndjson") == f"/export/records.ndjson?{query}"
    assert link(response, "feed-export-csv") == f"/export/records.csv?{query}"
    exported = owner.get(link(response, "feed-export-ndjson"))
    lines = [json.loads(line) for line in body_of(exported).splitlines()]
    assert [(line["event_name"], line["keys"]["pk"]["S"]) for line in lines] == [("INSERT", "ORDER#1")]


def test_it_links_unfiltered_exports_to_everything(owner, orders):
    response = owner.get("/feed/")

    assert link(response, "feed-export-ndjson") == "/export/records.ndjson"
    assert link(response, "feed-export-csv") == "/export/records.csv"


def test_it_marks_ttl_deletions(owner, orders):
    removal = ChangeRecord.objects.get(source=orders, event_name="REMOVE")
    # DynamoDB Local never expires items; the reader sets this from the record's userIdentity.
    ChangeRecord.objects.filter(pk=removal.pk).update(is_ttl_delete=True)

    response = owner.get("/feed/?event=REMOVE")

    assert rendered_ids(response) == [removal.pk]
    assert 'class="badge badge-ttl"' in response.content.decode()
    assert 'class="badge badge-ttl"' not in owner.get("/feed/?event=MODIFY").content.decode()


def test_it_renders_item_data_as_text(owner, make_table, dynamodb):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": XSS_KEY}, "<b>name</b>": {"S": "javascript:__xss()"}})
    read_until_idle(source_id=source.pk)

    body = owner.get("/feed/").content.decode()

    assert "<img src=x" not in body and "<script>__xss" not in body and "<b>name" not in body
    assert html.escape(f"pk={XSS_KEY}") in body
    assert 'href="javascript' not in body


def test_it_links_the_feed_in_the_navigation(owner):
    body = owner.get("/").content.decode()

    assert '<a href="/feed/">Feed</a>' in body


def body_of(response) -> str:
    """The whole body of a streamed export; async_to_sync keeps the view's database calls on
    this thread, inside the test's transaction."""

    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)().decode()

"""The record detail, item history and history pages as the server renders them, on records
written to DynamoDB Local and read from its stream. What the pages' scripts draw in a browser is
in tests/browser/test_record_browser.py."""

import html
import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest

from streams.models import ChangeRecord
from streams.sources import source_add
from tests.support.readers import read_until_idle

pytestmark = pytest.mark.django_db

XSS = '<img src=x onerror=__xss()>"><script>__xss()</script>'


@pytest.fixture
def orders(make_table, dynamodb):
    """ORDER#1 placed, repriced with a type change, retagged and shipped, then deleted; ORDER#2
    placed in between, so an item's neighbours are not simply the records next to it."""
    table = make_table(prefix="orders")
    source = source_add(table_name=table, region="us-east-1")
    key = {"pk": {"S": "ORDER#1"}, "sk": {"N": "1"}}
    dynamodb.put_item(
        TableName=table,
        Item={
            **key,
            "status": {"S": "PENDING"},
            "qty": {"N": "1"},
            "tags": {"SS": ["gift", "new"]},
            "address": {"M": {"city": {"S": "Paris"}, "zip": {"S": "75001"}}},
        },
    )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "ORDER#2"}, "sk": {"N": "1"}, "status": {"S": "PENDING"}})
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET qty = :qty, address.city = :city, tags = :tags",
        ExpressionAttributeValues={":qty": {"S": "1"}, ":city": {"S": "Lyon"}, ":tags": {"SS": ["gift", "priority"]}},
    )
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "SHIPPED"}},
    )
    dynamodb.delete_item(TableName=table, Key=key)
    assert read_until_idle(source_id=source.pk) == 5
    return source


def changes_of(source, pk="ORDER#1") -> list[ChangeRecord]:
    return list(ChangeRecord.objects.filter(source=source, partition_key=pk).order_by("sequence_key"))


def script_data(response, element_id: str):
    """What a page hands its script through json_script."""
    pattern = rf'<script id="{element_id}" type="application/json">(.*?)</script>'
    found = re.search(pattern, response.content.decode(), re.S)
    assert found, f"no #{element_id}"
    return json.loads(found.group(1))


def link(response, element_id: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)"[^>]*\sid="{element_id}"', response.content.decode())
    return html.unescape(found.group(1)) if found else None


def history_ids(response) -> list[int]:
    return [int(found) for found in re.findall(r'<tr class="history-row" data-id="(\d+)">', response.content.decode())]


def test_it_sends_anonymous_visitors_to_the_login_page(client, orders):
    record = changes_of(orders)[0]

    for url in (f"/records/{record.pk}/", f"/items/{orders.pk}/?key=x", "/history/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")


def test_it_shows_a_records_keys_sequence_number_shard_and_event_id(owner, orders):
    modify = changes_of(orders)[1]

    response = owner.get(f"/records/{modify.pk}/")

    assert response.status_code == 200
    body = response.content.decode()
    assert f'<dd class="mono" id="sequence-number">{modify.sequence_number}</dd>' in body
    assert f'<dd class="mono" id="shard-id">{modify.shard.shard_id}</dd>' in body
    assert f'id="event-id">{modify.event_id}' in body
    assert modify.shard.stream.arn in body
    key_part = '<span class="key-name">{}</span> <span class="node-tag">{}</span> <span class="key-value">{}</span>'
    assert key_part.format("pk", "S", "ORDER#1") in body
    assert key_part.format("sk", "N", "1") in body
    assert '<span class="event event-modify">MODIFY</span>' in body
    assert f"{modify.size_bytes} bytes" in body
    assert "User identity" not in body
    assert "Partial diff" not in body
    # The script gets the images and the diff; the diff is the stored one, not worked out again.
    data = script_data(response, "record-data")
    assert data["diff"] == modify.diff
    assert {change["path"]: change["kind"] for change in data["diff"]} == {
        "address.city": "changed", "qty": "type_changed", "tags": "changed",
    }
    assert data["old_image"]["qty"] == {"N": "1"} and data["new_image"]["qty"] == {"S": "1"}
    scripts = re.findall(r"<script\b[^>]*>", body)
    assert scripts == [
        '<script type="module" src="/static/js/alert_banner.js">',
        '<script id="record-data" type="application/json">',
        '<script src="/static/js/diffview.js" defer>',
        '<script src="/static/js/record.js" defer>',
    ]


def test_it_shows_the_user_identity_of_a_ttl_deletion(owner, orders):
    remove = changes_of(orders)[-1]
    # DynamoDB Local never expires items, so the REMOVE it streamed is given the identity that
    # AWS puts on TTL deletions, spelt as the Streams API spells it.
    ChangeRecord.objects.filter(pk=remove.pk).update(
        user_identity={"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}, is_ttl_delete=True
    )

    response = owner.get(f"/records/{remove.pk}/")

    body = response.content.decode()
    assert "User identity" in body
    assert '<span class="key-name">PrincipalId</span> dynamodb.amazonaws.com' in body
    assert '<span class="key-name">Type</span> Service' in body
    assert ">TTL deletion</span>" in body
    history = owner.get("/history/")
    badge = """<span class="badge badge-ttl" title="Deleted by DynamoDB's time to live">TTL</span>"""
    assert badge in history.content.decode()


def test_it_links_the_previous_and_next_change_of_the_same_item(owner, orders):
    insert, modify, shipped, remove = changes_of(orders)

    first = owner.get(f"/records/{insert.pk}/")
    middle = owner.get(f"/records/{modify.pk}/")
    last = owner.get(f"/records/{remove.pk}/")

    assert link(first, "link-previous") is None
    assert "No earlier change" in first.content.decode()
    assert link(first, "link-next") == f"/records/{modify.pk}/"
    assert link(middle, "link-previous") == f"/records/{insert.pk}/"
    assert link(middle, "link-next") == f"/records/{shipped.pk}/"
    assert link(last, "link-previous") == f"/records/{shipped.pk}/"
    assert link(last, "link-next") is None
    item_link = link(middle, "link-item-history")
    assert urlsplit(item_link).path == f"/items/{orders.pk}/"
    assert dict(parse_qsl(urlsplit(item_link).query)) == {"key": insert.item_key}


def test_it_lists_an_items_changes_in_order_with_each_diff_and_state(owner, orders):
    insert, modify, shipped, remove = changes_of(orders)
    other = changes_of(orders, pk="ORDER#2")[0]

    response = owner.get(link(owner.get(f"/records/{modify.pk}/"), "link-item-history"))

    assert response.status_code == 200
    body = response.content.decode()
    listed = [int(found) for found in re.findall(r'<li class="item-change" id="change-(\d+)"', body)]
    assert listed == [insert.pk, modify.pk, shipped.pk, remove.pk]
    assert f"change-{other.pk}" not in body
    assert "4 changes, oldest first" in body
    assert html.escape('status: "PENDING" → "SHIPPED"') in body
    data = script_data(response, "item-data")
    changes = data["changes"]
    assert [change["id"] for change in changes] == listed
    assert [change["diff"] for change in changes] == [insert.diff, modify.diff, shipped.diff, remove.diff]
    assert changes[1]["state_after"]["qty"] == {"S": "1"}
    assert changes[2]["state_after"]["status"] == {"S": "SHIPPED"}
    assert changes[3]["state_after"] is None and changes[3]["state_known"] is True
    assert re.findall(r'<script src="([^"]+)"', body) == ["/static/js/diffview.js", "/static/js/item.js"]


def test_it_says_so_when_a_stream_hides_what_changed(owner, make_table, dynamodb):
    table = make_table(view_type="KEYS_ONLY", range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "A"}, "v": {"N": "1"}})
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "A"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"N": "2"}},
    )
    read_until_idle(source_id=source.pk)
    modify = ChangeRecord.objects.get(source=source, event_name="MODIFY")

    response = owner.get(f"/records/{modify.pk}/")

    body = response.content.decode()
    assert "Partial diff." in body
    assert "The stream's view type is KEYS_ONLY" in body
    data = script_data(response, "record-data")
    assert data["diff_complete"] is False
    assert data["diff"] == [] and data["old_image"] is None and data["new_image"] is None
    item = script_data(owner.get(link(response, "link-item-history")), "item-data")
    assert [change["state_known"] for change in item["changes"]] == [False, False]


def test_it_returns_the_lambda_test_event_of_a_record(owner, orders):
    modify = changes_of(orders)[1]
    page = owner.get(f"/records/{modify.pk}/")
    url = link(page, "download-lambda")

    response = owner.get(url)

    assert response.status_code == 200
    event = response.json()
    assert list(event) == ["Records"]
    (record,) = event["Records"]
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"] == modify.shard.stream.arn
    assert record["eventID"] == modify.event_id
    assert record["eventName"] == "MODIFY"
    assert record["dynamodb"]["SequenceNumber"] == modify.sequence_number
    assert record["dynamodb"]["Keys"] == {"pk": {"S": "ORDER#1"}, "sk": {"N": "1"}}
    assert record["dynamodb"]["OldImage"]["qty"] == {"N": "1"}
    assert record["dynamodb"]["NewImage"]["qty"] == {"S": "1"}
    assert script_data(page, "record-data")["links"]["lambda_event"] == url


def test_it_pages_history_back_by_id_without_overlap_or_gap(owner, orders):
    every = list(ChangeRecord.objects.order_by("-id").values_list("id", flat=True))
    assert len(every) == 5

    pages, url = [], "/history/?limit=4"
    while url:
        response = owner.get(url)
        assert response.status_code == 200
        pages.append(history_ids(response))
        url = link(response, "history-older")

    assert pages == [every[:4], every[4:]]
    # The last page has a way back to the newest records and none further back.
    last = owner.get(f"/history/?limit=4&before={every[3]}")
    assert link(last, "history-newest") == "/history/?limit=4"
    assert link(last, "history-older") is None
    assert link(owner.get("/history/?limit=4"), "history-newest") is None


def test_it_keeps_the_filter_in_the_older_link(owner, orders):
    modifies = list(ChangeRecord.objects.filter(event_name="MODIFY").order_by("-id").values_list("id", flat=True))

    first = owner.get(f"/history/?event=MODIFY&source={orders.pk}&limit=1")

    assert history_ids(first) == modifies[:1]
    older = link(first, "history-older")
    assert parse_qsl(urlsplit(older).query) == [
        ("source", str(orders.pk)), ("event", "MODIFY"), ("before", str(modifies[0])), ("limit", "1"),
    ]
    second = owner.get(older)
    assert history_ids(second) == modifies[1:2]
    assert link(second, "history-newest") == f"/history/?source={orders.pk}&event=MODIFY&limit=1"
    body = second.content.decode()
    assert f'<option value="{orders.pk}" selected>' in body
    assert 'value="MODIFY" checked' in body


def test_it_shows_a_bad_filter_and_no_rows(owner, orders):
    bad_event = owner.get("/history/?event=UPSERT")
    bad_before = owner.get("/history/?before=yesterday")
    backwards = owner.get("/history/?from=2026-02-01T00:00&to=2026-01-01T00:00")

    assert "The filter is not valid: event must be INSERT, MODIFY or REMOVE, not UPSERT." in bad_event.content.decode()
    assert "before must be a whole number." in bad_before.content.decode()
    assert "from must be before to." in backwards.content.decode()
    for response in (bad_event, bad_before, backwards):
        assert response.status_code == 200
        assert 'role="alert"' in response.content.decode()
        assert history_ids(response) == []
        assert link(response, "history-older") is None


def test_it_shows_only_the_time_range_asked_for(owner, orders):
    # DynamoDB Local stamps every record of this test with the same minute; spread them over
    # days so that a range has something to cut.
    records = list(ChangeRecord.objects.order_by("id"))
    for day, record in enumerate(records, start=1):
        noon = datetime(2026, 1, day, 12, tzinfo=UTC)
        ChangeRecord.objects.filter(pk=record.pk).update(approximate_creation_time=noon)

    response = owner.get("/history/?from=2026-01-02T00:00&to=2026-01-04T12:00:00")

    assert history_ids(response) == [records[3].pk, records[2].pk, records[1].pk]
    body = response.content.decode()
    assert 'type="datetime-local" name="from" step="1" value="2026-01-02T00:00:00"' in body
    assert 'type="datetime-local" name="to" step="1" value="2026-01-04T12:00:00"' in body
    assert "2026-01-03 12:00:00" in body
    # An explicit offset is honoured and shown back in UTC.
    shifted = owner.get("/history/?from=2026-01-05T13:00%2B01:00")
    assert history_ids(shifted) == [records[4].pk]
    assert 'name="from" step="1" value="2026-01-05T12:00:00"' in shifted.content.decode()


def test_it_escapes_what_dynamodb_sent(owner, make_table, dynamodb):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": XSS}, XSS: {"S": XSS}, "m": {"M": {XSS: {"SS": [XSS]}}}})
    dynamodb.update_item(
        TableName=table, Key={"pk": {"S": XSS}}, UpdateExpression="SET #x = :x",
        ExpressionAttributeNames={"#x": XSS}, ExpressionAttributeValues={":x": {"S": XSS + "!"}},
    )
    read_until_idle(source_id=source.pk)
    record = ChangeRecord.objects.get(source=source, event_name="MODIFY")

    pages = [
        owner.get(f"/records/{record.pk}/"),
        owner.get(f"/items/{source.pk}/", {"key": record.item_key}),
        owner.get("/history/"),
        owner.get(f"/history/?key={XSS}"),
    ]

    for response in pages:
        body = response.content.decode()
        assert response.status_code == 200
        assert "<img" not in body
        assert "<script>__xss" not in body
        assert html.escape(XSS) in body or "\\u003Cimg" in body
    assert script_data(pages[0], "record-data")["keys"] == {"pk": {"S": XSS}}


def test_it_says_when_an_item_has_no_stored_changes(owner, orders):
    response = owner.get(f"/items/{orders.pk}/", {"key": '{"pk":{"S":"ORDER#404"},"sk":{"N":"1"}}'})

    assert response.status_code == 200
    assert "No stored changes for this key." in response.content.decode()
    assert script_data(response, "item-data")["changes"] == []
    assert owner.get(f"/items/{orders.pk}/").status_code == 404
    assert owner.get("/records/999999999/").status_code == 404


def test_it_serves_page_scripts_that_build_nodes_instead_of_parsing_markup(owner):
    for name in ("diffview", "record", "item"):
        response = owner.get(f"/static/js/{name}.js")

        assert response.status_code == 200
        script = b"".join(response.streaming_content).decode()
        assert "textContent" in script
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in script, f"{name}.js uses {sink}"

"""The read-only JSON API, the export and the page headers, through HTTP."""

import csv
import io
import json

import pytest
from asgiref.sync import async_to_sync

from streams import records
from streams.models import ChangeRecord
from streams.sources import source_add
from tests.support.fake_sources import numbered
from tests.support.fake_streams import FakeShard, FakeStreams
from tests.support.readers import read_until_idle

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders(make_table, dynamodb):
    """A table with three orders: one inserted, one shipped, one deleted."""
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    put = lambda pk, status: dynamodb.put_item(  # noqa: E731
        TableName=table, Item={"pk": {"S": pk}, "status": {"S": status}, "tags": {"SS": ["new"]}}
    )
    put("ORDER#1", "PENDING")
    put("ORDER#2", "PENDING")
    put("OTHER#3", "PENDING")
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "ORDER#2"}},
        UpdateExpression="SET #s = :s, tracking = :t",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "SHIPPED"}, ":t": {"S": "TRK1"}},
    )
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "OTHER#3"}})
    read_until_idle(source_id=source.pk)
    return source


def ids(rows):
    return [row["id"] for row in rows]


def test_it_refuses_anonymous_api_calls_with_401_json(client, orders):
    response = client.get("/api/records")
    assert response.status_code == 401
    assert "Log in" in response.json()["error"]


def test_it_lists_records_newest_first_and_pages_back_with_before(viewer, orders):
    everything = viewer.get("/api/records").json()["records"]
    first = viewer.get("/api/records?limit=2").json()
    second = viewer.get(f"/api/records?limit=2&before={first['next_before']}").json()
    third = viewer.get(f"/api/records?limit=2&before={second['next_before']}").json()

    assert len(everything) == 5
    assert ids(everything) == sorted(ids(everything), reverse=True)
    assert ids(first["records"]) + ids(second["records"]) + ids(third["records"]) == ids(everything)
    assert third["next_before"] is None


def test_it_returns_what_was_saved_after_a_cursor_oldest_first(viewer, orders):
    everything = sorted(ids(viewer.get("/api/records").json()["records"]))
    body = viewer.get(f"/api/records?since={everything[1]}&limit=2").json()
    assert ids(body["records"]) == everything[2:4]
    assert body["more"] is True and body["last_id"] == everything[3]
    rest = viewer.get(f"/api/records?since={body['last_id']}").json()
    assert ids(rest["records"]) == everything[4:] and rest["more"] is False


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("event=MODIFY", [("MODIFY", "ORDER#2")]),
        ("event=REMOVE&event=INSERT&key=OTHER%233", [("REMOVE", "OTHER#3"), ("INSERT", "OTHER#3")]),
        ("key=ORDER&key_match=prefix&event=INSERT", [("INSERT", "ORDER#2"), ("INSERT", "ORDER#1")]),
        ("path=tracking", [("MODIFY", "ORDER#2")]),
        ("path=status&event=MODIFY", [("MODIFY", "ORDER#2")]),
        ("q=trk1", [("MODIFY", "ORDER#2")]),
        ("key=ORDER%231", [("INSERT", "ORDER#1")]),
        ("pattern=%7B%22dynamodb%22%3A%7B%22NewImage%22%3A%7B%22tracking%22%3A%7B%22S%22%3A%5B%22TRK1%22%5D%7D%7D%7D%7D", [("MODIFY", "ORDER#2")]),
        ("pattern=%7B%22eventName%22%3A%5B%22REMOVE%22%5D%7D&key=OTHER&key_match=prefix", [("REMOVE", "OTHER#3")]),
    ],
)
def test_it_filters_records(viewer, orders, query, expected):
    rows = viewer.get(f"/api/records?{query}").json()["records"]
    assert [(row["event_name"], row["partition_key"]) for row in rows] == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("event=UPSERT", "event must be INSERT, MODIFY or REMOVE"),
        ("source=abc", "source must be a source id"),
        ("key_match=contains", "key_match must be equals or prefix"),
        ("from=yesterday", "from must be a date and time"),
        ("from=2026-02-01T00:00&to=2026-01-01T00:00", "from must be before to"),
        ("before=-3", "before must be at least 1"),
        ("limit=ten", "limit must be a whole number"),
        ("pattern=%7B%22eventName%22%3A%22INSERT%22%7D", "pattern is not a valid event pattern"),
    ],
)
def test_it_explains_bad_filters(viewer, orders, query, message):
    response = viewer.get(f"/api/records?{query}")
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_it_returns_one_record_with_its_images_diff_and_neighbours(viewer, orders):
    modify = ChangeRecord.objects.get(event_name="MODIFY")
    body = viewer.get(f"/api/records/{modify.pk}").json()
    assert body["new_image"]["status"] == {"S": "SHIPPED"}
    assert body["old_image"]["status"] == {"S": "PENDING"}
    assert {change["path"] for change in body["diff"]} == {"status", "tracking"}
    assert body["sequence_number"] == modify.sequence_number
    insert = ChangeRecord.objects.get(event_name="INSERT", partition_key="ORDER#2")
    assert body["links"]["previous"] == f"/records/{insert.pk}/"
    assert body["links"]["next"] is None
    assert viewer.get("/api/records/999999").status_code == 404


def test_it_returns_an_items_history_in_order(viewer, orders):
    remove = ChangeRecord.objects.get(event_name="REMOVE")
    body = viewer.get(f"/api/items/{orders.pk}", {"key": remove.item_key}).json()
    assert [change["event_name"] for change in body["changes"]] == ["INSERT", "REMOVE"]
    assert body["changes"][0]["state_after"]["status"] == {"S": "PENDING"}
    assert body["changes"][1]["state_after"] is None
    assert viewer.get(f"/api/items/{orders.pk}").status_code == 400


def test_it_gives_a_record_as_the_exact_lambda_event(viewer, orders):
    modify = ChangeRecord.objects.select_related("shard__stream").get(event_name="MODIFY")
    event = viewer.get(f"/api/records/{modify.pk}/lambda-event").json()
    [record] = event["Records"]
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventName"] == "MODIFY"
    assert record["eventSourceARN"] == modify.shard.stream.arn
    assert record["awsRegion"] == "us-east-1"
    assert record["dynamodb"]["Keys"] == {"pk": {"S": "ORDER#2"}}
    assert record["dynamodb"]["NewImage"]["status"] == {"S": "SHIPPED"}
    assert record["dynamodb"]["SequenceNumber"] == modify.sequence_number
    assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)


def body_of(response) -> str:
    """The whole body of a streamed export. async_to_sync keeps the view's database calls on
    this thread, inside the test's transaction."""

    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)().decode()


def test_it_exports_the_filtered_view_as_ndjson(operator, orders):
    response = operator.get("/export/records.ndjson?key=ORDER&key_match=prefix")
    assert response["Content-Type"] == "application/x-ndjson"
    assert "attachment" in response["Content-Disposition"]
    lines = [json.loads(line) for line in body_of(response).splitlines()]
    assert sorted((line["event_name"], line["keys"]["pk"]["S"]) for line in lines) == [
        ("INSERT", "ORDER#1"), ("INSERT", "ORDER#2"), ("MODIFY", "ORDER#2")
    ]


def test_it_exports_the_filtered_view_as_csv(operator, orders):
    response = operator.get("/export/records.csv?event=MODIFY")
    rows = list(csv.DictReader(io.StringIO(body_of(response))))
    assert len(rows) == 1
    assert rows[0]["event_name"] == "MODIFY"
    assert json.loads(rows[0]["new_image"])["tracking"] == {"S": "TRK1"}
    assert 'status: "PENDING" → "SHIPPED"' in rows[0]["summary"]


def test_it_exports_only_records_matching_an_event_pattern(operator, orders):
    response = operator.get("/export/records.ndjson", {"pattern": '{"eventName": ["INSERT"]}'})
    lines = [json.loads(line) for line in body_of(response).splitlines()]
    assert sorted(line["keys"]["pk"]["S"] for line in lines) == ["ORDER#1", "ORDER#2", "OTHER#3"]


def test_it_refuses_anonymous_exports(client, orders):
    assert client.get("/export/records.csv").status_code == 401


def test_it_sends_a_content_security_policy_without_inline_scripts(viewer, orders):
    policy = viewer.get("/feed/")["Content-Security-Policy"]
    script_src = next(part for part in policy.split(";") if part.strip().startswith("script-src"))
    assert script_src.split() == ["script-src", "'self'"]
    assert "unsafe-inline" not in script_src


def test_it_goes_on_with_a_search_that_stopped_at_its_scan_budget(viewer, fake_source, monkeypatch):
    # The budget is shrunk so that ten records outlast it: a pattern matching only the oldest
    # must still be reached by paging, and paging must not end before it.
    monkeypatch.setattr(records, "PATTERN_SCAN_MAX", 4)
    monkeypatch.setattr(records, "PATTERN_CHUNK", 2)
    source = fake_source(FakeStreams([FakeShard("shardId-1", records=numbered("ORDER#", 10))]))
    assert read_until_idle(source_id=source.pk) == 10
    oldest = ChangeRecord.objects.order_by("id").first()
    pattern = json.dumps({"dynamodb": {"Keys": {"pk": {"S": [oldest.partition_key]}}}})

    found, pages, before = [], 0, None
    while True:
        body = viewer.get("/api/records", {"pattern": pattern, "limit": 5, **({"before": before} if before else {})}).json()
        found += ids(body["records"])
        pages += 1
        before = body["next_before"]
        if before is None:
            break

    assert found == [oldest.pk] and pages == 3  # 4 looked at, 4 more, the last 2 and the match
    forward = viewer.get("/api/records", {"pattern": pattern, "since": 0, "limit": 5}).json()
    assert ids(forward["records"]) == [oldest.pk] and forward["more"] is True
    assert forward["last_id"] == ChangeRecord.objects.order_by("id")[3].pk


def test_it_leads_history_on_past_a_search_that_stopped_at_its_scan_budget(viewer, fake_source, monkeypatch):
    monkeypatch.setattr(records, "PATTERN_SCAN_MAX", 4)
    monkeypatch.setattr(records, "PATTERN_CHUNK", 2)
    source = fake_source(FakeStreams([FakeShard("shardId-1", records=numbered("ORDER#", 10))]))
    assert read_until_idle(source_id=source.pk) == 10
    stopped_at = ChangeRecord.objects.order_by("-id")[3].pk
    pattern = json.dumps({"dynamodb": {"Keys": {"pk": {"S": ["ORDER#0"]}}}})

    page = viewer.get("/history/", {"pattern": pattern}).content.decode()

    assert "No match among the records searched so far" in page
    assert f"before={stopped_at}" in page

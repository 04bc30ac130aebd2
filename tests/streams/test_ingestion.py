"""Ingestion against a real DynamoDB Local: what is written to a table arrives in our
database exactly, in order, once."""

import base64

import pytest

from streams import aws
from streams.models import ChangeRecord, Shard, StreamSource
from tests.support.readers import read_until_idle, shards_claim
from streams.sources import SourceError, source_add, source_discover

pytestmark = pytest.mark.django_db

B64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731


def every_type_item():
    return {
        "pk": {"S": "order#1"},
        "sk": {"N": "1"},
        "s": {"S": "héllo"},
        "empty": {"S": ""},
        "n": {"N": "12345678901234567890123456789012345678"},
        "small": {"N": "-0.000000000000000000000000000000000000012"},
        "b": {"B": b"\x00\x01binary\xff"},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "bs": {"BS": [b"\x01", b"\x02"]},
        "nul": {"NULL": True},
        "yes": {"BOOL": True},
        "m": {"M": {"city": {"S": "Oslo"}, "zip": {"N": "150"}, "none": {"M": {}}}},
        "l": {"L": [{"S": "x"}, {"N": "1"}, {"L": []}]},
    }


def wire(value):
    """The item as Shardwatch stores it: binary as base64 text, as the stream sends it. An
    empty map is {"M": {}} as AWS sends it, although DynamoDB Local's stream sends a bare {}
    (tests/streams/test_image_shapes.py)."""
    if isinstance(value, dict):
        return {key: wire(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [wire(inner) for inner in value]
    if isinstance(value, bytes):
        return B64(value)
    return value


def test_it_saves_every_attribute_type_in_stream_order(make_table, dynamodb):
    table = make_table()
    source = source_add(table_name=table, region="us-east-1")
    item = every_type_item()
    dynamodb.put_item(TableName=table, Item=item)
    dynamodb.update_item(
        TableName=table,
        Key={"pk": item["pk"], "sk": item["sk"]},
        UpdateExpression="SET s = :s, n = :n ADD ss :more REMOVE nul",
        ExpressionAttributeValues={":s": {"N": "1"}, ":n": {"N": "12345678901234567890123456789012345679"}, ":more": {"SS": ["c"]}},
    )
    dynamodb.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})

    assert read_until_idle(source_id=source.pk) == 3

    records = list(ChangeRecord.objects.filter(source=source).order_by("sequence_key"))
    assert [record.event_name for record in records] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = records
    assert insert.keys == {"pk": {"S": "order#1"}, "sk": {"N": "1"}}
    assert insert.new_image == wire(item)
    assert insert.old_image is None
    assert modify.old_image == wire(item)
    assert modify.new_image["s"] == {"S": "1"} or modify.new_image["s"] == {"N": "1"}
    assert modify.new_image["n"] == {"N": "12345678901234567890123456789012345679"}
    assert "nul" not in modify.new_image
    assert remove.old_image == modify.new_image
    assert remove.new_image is None
    changes = {change["path"]: change for change in modify.diff}
    assert changes["s"]["kind"] == "type_changed"
    assert changes["n"]["kind"] == "changed"
    assert changes["nul"]["kind"] == "removed"
    assert changes["ss"]["added"] == ["c"]
    assert len(modify.diff) == 4
    assert {change["kind"] for change in insert.diff} == {"added"}
    assert {change["kind"] for change in remove.diff} == {"removed"}
    assert all(record.view_type == "NEW_AND_OLD_IMAGES" for record in records)
    assert all(record.item_key == insert.item_key for record in records)
    assert len({record.event_id for record in records}) == 3
    shard = Shard.objects.get(stream__source=source)
    assert shard.checkpoint == remove.sequence_number


def test_it_adds_no_duplicates_when_reading_again_from_an_older_checkpoint(make_table, dynamodb):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    for number in range(5):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{number}"}, "v": {"N": str(number)}})
    read_until_idle(source_id=source.pk)
    first = ChangeRecord.objects.filter(source=source).order_by("sequence_key").first()
    Shard.objects.filter(stream__source=source).update(checkpoint=first.sequence_number)

    read_until_idle(source_id=source.pk)
    Shard.objects.filter(stream__source=source).update(checkpoint="")
    read_until_idle(source_id=source.pk)

    keys = sorted(r.keys["pk"]["S"] for r in ChangeRecord.objects.filter(source=source))
    assert keys == ["k0", "k1", "k2", "k3", "k4"]


def nested(depth):
    value = {"S": "bottom"}
    for _ in range(depth - 1):
        value = {"M": {"d": value}}
    return value


def test_it_stores_the_largest_and_deepest_items_losslessly(make_table, dynamodb):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    big = "x" * (400 * 1024 - 200)
    items = [
        {"pk": {"S": "big"}, "blob": {"S": big}},
        {"pk": {"S": "deep"}, "deep": nested(32), "list": {"L": [nested(31)]}},
        {
            "pk": {"S": "numbers"},
            "max": {"N": "99999999999999999999999999999999999999"},
            "tiny": {"N": "1E-130"},
            "huge": {"N": "9.9999999999999999999999999999999999999E+125"},
            "negative": {"N": "-12345678901234567890.123456789012345678"},
        },
        {"pk": {"S": "empties"}, "es": {"S": ""}, "em": {"M": {}}, "el": {"L": []}, "eb": {"B": b""}},
    ]
    for item in items:
        dynamodb.put_item(TableName=table, Item=item)

    read_until_idle(source_id=source.pk)

    stored = {r.keys["pk"]["S"]: r.new_image for r in ChangeRecord.objects.filter(source=source)}
    assert stored["big"]["blob"]["S"] == big
    assert stored["deep"] == wire(items[1])
    served = dynamodb.get_item(TableName=table, Key={"pk": {"S": "numbers"}})["Item"]
    assert stored["numbers"] == served  # DynamoDB's own normal form, digit for digit
    assert stored["empties"] == wire(items[3])


def test_it_refuses_a_missing_table_and_saves_nothing(dynamodb_endpoint):
    with pytest.raises(SourceError, match="does not exist"):
        source_add(table_name="no-such-table", region="us-east-1")
    assert not StreamSource.objects.exists()


def test_it_refuses_a_table_without_a_stream(make_table):
    table = make_table(stream=False)
    with pytest.raises(SourceError, match="has no stream enabled"):
        source_add(table_name=table, region="us-east-1")
    assert not StreamSource.objects.exists()


def test_it_shows_the_aws_error_for_wrong_credentials(make_table, monkeypatch):
    table = make_table()
    source = source_add(table_name=table, region="us-east-1")
    # DynamoDB Local refuses access keys with anything but letters and digits, as AWS
    # refuses unknown ones.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-valid-key!")
    aws.forget_clients()
    try:
        source_discover(source_id=source.pk)
    finally:
        monkeypatch.undo()
        aws.forget_clients()
    source.refresh_from_db()
    assert source.status == StreamSource.Status.ERROR
    assert "UnrecognizedClientException" in source.last_error


def test_it_shows_an_unreachable_endpoint_and_backs_off(make_table):
    table = make_table()
    source = source_add(table_name=table, region="us-east-1")
    read_until_idle(source_id=source.pk)
    StreamSource.objects.filter(pk=source.pk).update(endpoint_url="http://127.0.0.1:9")
    from streams.reading import shard_poll

    shard = Shard.objects.get(stream__source=source)
    [(shard_id, owner)] = shards_claim()
    poll = shard_poll(shard_id=shard_id, owner=owner)

    source.refresh_from_db()
    shard.refresh_from_db()
    assert poll.keep_reading and poll.error_count == 1 and poll.delay_s > 0
    assert source.status == StreamSource.Status.UNREACHABLE
    assert "127.0.0.1:9" in source.last_error
    assert shard.error_count == 1


def test_it_starts_a_latest_source_after_what_is_already_in_the_stream(make_table, dynamodb):
    table = make_table(range_key=False)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "before"}})
    source = source_add(table_name=table, region="us-east-1", start_position="LATEST")
    source_discover(source_id=source.pk)
    read_until_idle(source_id=source.pk)  # takes the LATEST iterator
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "after"}})

    read_until_idle(source_id=source.pk)

    assert [r.keys["pk"]["S"] for r in ChangeRecord.objects.filter(source=source)] == ["after"]


def test_it_follows_the_new_stream_after_the_stream_is_disabled_and_enabled(make_table, dynamodb):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    first_arn = source.stream_arn
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "old-stream"}})
    dynamodb.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
    dynamodb.update_table(
        TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "new-stream"}})

    read_until_idle(source_id=source.pk)

    source.refresh_from_db()
    assert source.stream_arn != first_arn
    records = list(ChangeRecord.objects.filter(source=source).order_by("id"))
    assert [r.keys["pk"]["S"] for r in records] == ["old-stream", "new-stream"]
    assert source.status == StreamSource.Status.ACTIVE


def test_it_shows_a_deleted_table_as_a_status_not_a_crash(make_table, dynamodb):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    read_until_idle(source_id=source.pk)
    dynamodb.delete_table(TableName=table)

    read_until_idle(source_id=source.pk)
    read_until_idle(source_id=source.pk)

    source.refresh_from_db()
    assert source.status == StreamSource.Status.TABLE_MISSING
    assert "does not exist" in source.last_error
    assert ChangeRecord.objects.filter(source=source).count() == 1


def test_it_receives_records_exactly_as_the_stream_sends_them(make_table, dynamodb):
    table = make_table(range_key=False)
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "k"}, "b": {"B": b"\xff\x00"}})
    client = aws.streams_client(region="us-east-1")
    shard = client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    response = client.get_records(ShardIterator=iterator)

    [record] = response["Records"]
    assert record["dynamodb"]["NewImage"]["b"] == {"B": B64(b"\xff\x00")}
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)
    assert response["NextShardIterator"]
    # Errors still come from botocore, as boto3 documents them.
    with pytest.raises(client.exceptions.ClientError, match="ValidationException|ExpiredIterator|Invalid"):
        client.get_records(ShardIterator="not-an-iterator" * 3)


def test_it_keeps_reading_other_sources_while_one_fails(make_table, dynamodb):
    from streams.reading import shard_poll

    healthy_table, broken_table = make_table(range_key=False), make_table(range_key=False)
    healthy = source_add(table_name=healthy_table, region="us-east-1")
    broken = source_add(table_name=broken_table, region="us-east-1")
    source_discover(source_id=healthy.pk)
    source_discover(source_id=broken.pk)
    StreamSource.objects.filter(pk=broken.pk).update(endpoint_url="http://127.0.0.1:9")
    dynamodb.put_item(TableName=healthy_table, Item={"pk": {"S": "still-read"}})
    leases = dict(shards_claim())

    polls = {
        shard.stream.source_id: shard_poll(shard_id=shard.pk, owner=leases[shard.pk])
        for shard in Shard.objects.select_related("stream").filter(pk__in=leases)
    }

    assert polls[healthy.pk].saved == 1
    assert polls[broken.pk].keep_reading and polls[broken.pk].error_count == 1
    healthy.refresh_from_db()
    broken.refresh_from_db()
    assert healthy.status == StreamSource.Status.ACTIVE
    assert broken.status == StreamSource.Status.UNREACHABLE

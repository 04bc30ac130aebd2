"""Finding an ended shard's children (streams.sources.shard_children_discover) with
DescribeStream's ShardFilter, and with the full listing where the endpoint cannot filter.

Splits and lineage run against the fake Streams endpoint over HTTP
(tests/support/fake_streams_server.py): DynamoDB Local has one shard per stream, so its shards
never have children. What DynamoDB Local can show, a shard closed by disabling the stream, runs
against DynamoDB Local.
"""

import pytest

from streams.models import ChangeRecord, Shard, Stream, StreamSource
from streams.sources import shard_children_discover, source_add, source_discover, stream_sync_shards
from tests.support.fake_streams import IGNORED, REJECTED, FakeShard, FakeStreams, aws_error
from tests.support.readers import read_until_idle

pytestmark = pytest.mark.django_db


def http_source(server, fake: FakeStreams) -> StreamSource:
    """A source on the fake endpoint, its shards discovered as they are now."""
    server.fake = fake
    source = source_add(table_name="fake", region="us-east-1", endpoint_url=server.url)
    source_discover(source_id=source.pk)
    return source


def row(shard_id: str) -> Shard:
    return Shard.objects.get(shard_id=shard_id)


def filtered_calls(fake) -> list[dict]:
    return [call for call in fake.operations("DescribeStream") if call["ShardFilter"]]


def listing_calls(fake) -> list[dict]:
    return [call for call in fake.operations("DescribeStream") if not call["ShardFilter"]]


def test_it_finds_a_split_shards_children_with_one_filtered_call(fake_streams_server):
    fake = FakeStreams.generated(open_shards=250, closed_generations=1)
    source = http_source(fake_streams_server, fake)
    parent = list(fake.shards)[300]
    left, right = fake.split(parent)
    fake.calls.clear()

    found = shard_children_discover(shard_id=row(parent).pk)

    assert found.shard_ids == (left.shard_id, right.shard_id) and found.healthy and not found.listed_stream
    assert [call["ShardFilter"] for call in filtered_calls(fake)] == [{"Type": "CHILD_SHARDS", "ShardId": parent}]
    assert listing_calls(fake) == []
    assert {child.parent_shard_id for child in Shard.objects.filter(shard_id__in=found.shard_ids)} == {parent}
    assert Shard.objects.filter(stream__source=source).count() == 502


def test_it_leaves_the_children_unreadable_until_their_parent_is_finished(fake_streams_server):
    fake = FakeStreams.generated(open_shards=1, records_per_shard=2)
    [parent] = fake.shards
    http_source(fake_streams_server, fake)
    children = [child.shard_id for child in fake.split(parent)]

    shard_children_discover(shard_id=row(parent).pk)
    readable_before = set(Shard.objects.readable().values_list("shard_id", flat=True))
    Shard.objects.filter(shard_id=parent).update(state=Shard.State.FINISHED)
    readable_after = set(Shard.objects.readable().values_list("shard_id", flat=True))

    assert readable_before == {parent}
    assert readable_after == set(children)


def test_it_lists_the_stream_when_the_endpoint_ignores_the_filter(fake_streams_server):
    # As DynamoDB Local 3.1.0 does (tests/support/fake_streams.py, IGNORED): the first page of
    # the full listing, with the parent itself in it.
    fake = FakeStreams.generated(open_shards=250, child_shards_filter=IGNORED)
    http_source(fake_streams_server, fake)
    parent = list(fake.shards)[7]
    left, right = fake.split(parent)
    fake.calls.clear()

    found = shard_children_discover(shard_id=row(parent).pk)

    assert found.listed_stream and found.healthy
    assert found.shard_ids == (left.shard_id, right.shard_id)
    assert len(filtered_calls(fake)) == 1
    pages_after = [call["ExclusiveStartShardId"] for call in listing_calls(fake)]
    assert pages_after == [None, list(fake.shards)[99], list(fake.shards)[199]]
    assert row(parent).ending_sequence_number  # the listing closed the parent's row too


def test_it_lists_the_stream_when_the_endpoint_refuses_the_filter(fake_streams_server):
    fake = FakeStreams.generated(open_shards=3, child_shards_filter=REJECTED)
    http_source(fake_streams_server, fake)
    parent = list(fake.shards)[1]
    children = tuple(child.shard_id for child in fake.split(parent))

    found = shard_children_discover(shard_id=row(parent).pk)

    assert found.listed_stream and found.healthy and found.shard_ids == children


def test_it_lists_the_stream_when_botocore_refuses_the_filter(fake_streams_server):
    # botocore checks ShardFilter.ShardId against its model (28 to 65 characters) before sending,
    # as a botocore whose model predates ShardFilter refuses the parameter: ParamValidationError.
    fake = FakeStreams([FakeShard("shardId-short", records=[])])
    http_source(fake_streams_server, fake)
    children = tuple(child.shard_id for child in fake.split("shardId-short"))

    found = shard_children_discover(shard_id=row("shardId-short").pk)

    assert found.listed_stream and found.shard_ids == children
    assert filtered_calls(fake) == []  # never sent


def test_it_finds_no_children_for_a_shard_that_has_none_yet_without_listing(fake_streams_server):
    fake = FakeStreams.generated(open_shards=150)
    http_source(fake_streams_server, fake)
    fake.calls.clear()

    found = shard_children_discover(shard_id=row(list(fake.shards)[0]).pk)

    assert found.shard_ids == () and found.healthy and not found.listed_stream
    assert listing_calls(fake) == []


def test_it_records_a_refused_describe_stream_on_the_source_and_lists_nothing(fake_streams_server):
    # A failure streams.aws knows (denied, throttled, unreachable) is not a missing filter: the
    # full listing would fail the same way, at a hundred times the cost.
    fake = FakeStreams.generated(open_shards=3)
    source = http_source(fake_streams_server, fake)
    parent = list(fake.shards)[0]
    fake.split(parent)
    fake.errors["DescribeStream"] = [aws_error("AccessDeniedException", "DescribeStream", "not authorized")]
    fake.calls.clear()

    found = shard_children_discover(shard_id=row(parent).pk)

    source.refresh_from_db()
    assert not found.healthy and found.shard_ids == ()
    assert source.status == StreamSource.Status.ERROR
    assert "DescribeStream failed: AccessDeniedException: not authorized" in source.last_error
    assert listing_calls(fake) == [] and Shard.objects.count() == 3


def test_it_reads_a_parent_then_its_children_across_splits_over_http(fake_streams_server):
    fake = FakeStreams.generated(open_shards=2, records_per_shard=3)
    source = http_source(fake_streams_server, fake)
    first, second = fake.shards
    read_until_idle(source_id=source.pk)
    fake.records_append(shard_id=first, count=2)
    left, right = fake.split(first)
    fake.records_append(shard_id=left.shard_id, count=2)
    fake.records_append(shard_id=right.shard_id, count=1)
    fake.records_append(shard_id=second, count=1)

    read_until_idle(source_id=source.pk)

    by_shard = {}
    for record in ChangeRecord.objects.filter(source=source).select_related("shard").order_by("id"):
        by_shard.setdefault(record.shard.shard_id, []).append(record.id)
    assert {shard_id: len(ids) for shard_id, ids in by_shard.items()} == {
        first: 5, second: 4, left.shard_id: 2, right.shard_id: 1
    }
    assert max(by_shard[first]) < min(by_shard[left.shard_id] + by_shard[right.shard_id])
    assert row(first).state == Shard.State.FINISHED


def test_it_finds_no_children_for_a_shard_closed_by_disabling_the_stream_in_dynamodb_local(make_table, dynamodb):
    # DynamoDB Local 3.3.1 supports ShardFilter; a shard closed by disabling the stream has no
    # children there, and the answer says so without a full listing.
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    dynamodb.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
    # Only the shard listing, not the table's: the stream stays the source's current one here
    # (a superseded stream is always listed whole, see test_ingestion's re-enabled stream).
    stream_sync_shards(stream_id=Stream.objects.get(source=source).pk)
    shard = Shard.objects.get(stream__source=source)

    found = shard_children_discover(shard_id=shard.pk)

    shard.refresh_from_db()
    assert found.shard_ids == () and found.healthy and not found.listed_stream
    assert shard.state == Shard.State.CLOSED and shard.ending_sequence_number

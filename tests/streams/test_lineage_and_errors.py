"""Shard lineage, DescribeStream paging and AWS's rarer errors.

DynamoDB Local always has exactly one shard per stream and never trims, throttles or expires
iterators on demand, so these tests run the readers against tests/support/fake_streams.py, a small
fake of the Streams API that returns boto3-shaped responses and raises real ClientErrors.
When a trimmed read is a gap is in test_trimmed_gaps.py.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from streams.models import ChangeRecord, Gap, Shard, Stream, StreamSource
from streams.ingest import records_save
from streams.reading import shard_poll
from tests.support.fake_sources import claim_one, numbered, sync
from tests.support.fake_streams import FakeShard, FakeStreams, aws_error, stream_record
from tests.support.readers import read_until_idle, shards_claim

pytestmark = pytest.mark.django_db

def test_it_pages_describe_stream_past_a_hundred_shards(fake_source):
    fake = FakeStreams([FakeShard(f"shardId-{i:05d}") for i in range(250)])
    source = fake_source(fake)

    sync(source)

    assert Shard.objects.filter(stream__source=source).count() == 250
    assert [call["ExclusiveStartShardId"] for call in fake.operations("DescribeStream")] == [
        None,
        "shardId-00099",
        "shardId-00199",
    ]


def test_it_reads_a_parent_to_its_end_before_its_children(fake_source):
    parent = FakeShard("shardId-parent", records=numbered("p", 3), closed=True)
    left = FakeShard("shardId-left", parent="shardId-parent", records=numbered("l", 2, start=10))
    right = FakeShard("shardId-right", parent="shardId-parent", records=numbered("r", 2, start=20))
    grandchild = FakeShard("shardId-grandchild", parent="shardId-left", records=numbered("g", 1, start=30))
    source = fake_source(FakeStreams([grandchild, right, left, parent]))
    sync(source)

    assert set(Shard.objects.readable().values_list("shard_id", flat=True)) == {"shardId-parent"}

    read_until_idle(source_id=source.pk)

    by_shard = {}
    for record in ChangeRecord.objects.select_related("shard").order_by("id"):
        by_shard.setdefault(record.shard.shard_id, []).append(record.id)
    assert max(by_shard["shardId-parent"]) < min(by_shard["shardId-left"] + by_shard["shardId-right"])
    # Left and right are open, so the grandchild under left is never started.
    assert "shardId-grandchild" not in by_shard
    assert Shard.objects.get(shard_id="shardId-parent").state == Shard.State.FINISHED
    assert ChangeRecord.objects.count() == 7


def test_it_starts_a_child_whose_parent_has_expired_from_the_stream(fake_source):
    orphan = FakeShard("shardId-child", parent="shardId-trimmed-long-ago", records=numbered("c", 2))
    source = fake_source(FakeStreams([orphan]))

    read_until_idle(source_id=source.pk)

    assert ChangeRecord.objects.count() == 2


def test_it_takes_a_new_iterator_from_the_checkpoint_when_one_expires(fake_source):
    shard = FakeShard("shardId-1", records=numbered("k", 2))
    fake = FakeStreams([shard])
    source = fake_source(fake)
    sync(source)
    shard_id, owner = claim_one()
    first = shard_poll(shard_id=shard_id, owner=owner)
    shard.records.extend(numbered("k", 2, start=3))
    fake.errors["GetRecords"] = [aws_error("ExpiredIteratorException", "GetRecords")]

    expired = shard_poll(shard_id=shard_id, owner=owner, iterator=first.iterator)
    resumed = shard_poll(shard_id=shard_id, owner=owner, iterator=expired.iterator)

    assert expired.keep_reading and expired.iterator is None
    assert resumed.saved == 2
    assert fake.operations("GetShardIterator")[-1] == {
        "ShardId": "shardId-1",
        "Type": "AFTER_SEQUENCE_NUMBER",
        "SequenceNumber": f"{2:021d}",
    }
    assert ChangeRecord.objects.count() == 4


def test_it_backs_off_with_jitter_when_throttled(fake_source):
    fake = FakeStreams([FakeShard("shardId-1", records=numbered("k", 1))])
    source = fake_source(fake)
    sync(source)
    shard_id, owner = claim_one()
    fake.errors["GetRecords"] = [aws_error("LimitExceededException", "GetRecords")] * 3

    polls = []
    for _ in range(4):
        previous = polls[-1] if polls else None
        polls.append(
            shard_poll(
                shard_id=shard_id,
                owner=owner,
                error_count=previous.error_count if previous else 0,
            )
        )

    assert [poll.error_count for poll in polls] == [1, 2, 3, 0]
    # Full jitter below a ceiling that doubles from 0.5 s (1, 2, 4 s), never under 0.2 s.
    assert all(0.2 <= poll.delay_s <= max(0.2, 0.5 * 2**poll.error_count) for poll in polls[:3])
    assert polls[3].saved == 1
    source.refresh_from_db()
    assert source.status == StreamSource.Status.ACTIVE  # throttling is not an outage
    assert Shard.objects.get(pk=shard_id).error_count == 0


def test_it_shows_stream_gone_when_the_stream_disappears(fake_source):
    fake = FakeStreams([FakeShard("shardId-1", records=numbered("k", 1))])
    source = fake_source(fake)
    sync(source)
    shard_id, owner = claim_one()
    fake.errors["GetShardIterator"] = [aws_error("ResourceNotFoundException", "GetShardIterator", "Requested resource not found")]

    poll = shard_poll(shard_id=shard_id, owner=owner)

    source.refresh_from_db()
    assert not poll.keep_reading
    assert source.status == StreamSource.Status.STREAM_GONE
    assert "Requested resource not found" in source.last_error
    assert Gap.objects.filter(source=source, shard_id=shard_id).exists()
    assert Stream.objects.get(source=source).state == Stream.State.DRAINED


def test_it_keeps_a_bad_record_and_the_rest_of_its_batch(fake_source):
    good = numbered("ok", 2)
    bad = stream_record(sequence_number=f"{5:021d}", pk="bad", new={})
    bad["dynamodb"]["NewImage"]["weird"] = {"S": "two type tags", "N": "1"}
    bad["dynamodb"]["OldImage"] = {"pk": {"S": "bad"}, "weird": {"S": "x"}}
    bad["eventName"] = "MODIFY"
    after = stream_record(sequence_number=f"{6:021d}", pk="after", new={})
    source = fake_source(FakeStreams([FakeShard("shardId-1", records=[*good, bad, after])]))

    read_until_idle(source_id=source.pk)

    records = list(ChangeRecord.objects.order_by("sequence_key"))
    assert [r.keys["pk"]["S"] for r in records] == ["ok0", "ok1", "bad", "after"]
    assert "exactly one type tag" in records[2].decode_error
    assert records[2].new_image["weird"] == {"S": "two type tags", "N": "1"}  # kept as received
    assert records[2].diff == [] and not records[2].diff_complete
    assert Shard.objects.get().checkpoint == f"{6:021d}"


def test_it_polls_four_times_a_second_with_data_and_slower_when_idle(fake_source, settings):
    settings.SHARDWATCH_IDLE_AFTER_S = 60
    shard = FakeShard("shardId-1", records=numbered("k", 1))
    source = fake_source(FakeStreams([shard]))
    sync(source)
    shard_id, owner = claim_one()

    busy = shard_poll(shard_id=shard_id, owner=owner)
    recently_busy = shard_poll(shard_id=shard_id, owner=owner, iterator=busy.iterator)
    Shard.objects.filter(pk=shard_id).update(last_record_at=timezone.now() - timezone.timedelta(minutes=5))
    idle = shard_poll(shard_id=shard_id, owner=owner, iterator=recently_busy.iterator)

    assert 0 < busy.delay_s <= 0.25
    assert 0 < recently_busy.delay_s <= 0.25
    assert 0.5 < idle.delay_s <= 1.0


def without_sequence_number(record: dict) -> dict:
    del record["dynamodb"]["SequenceNumber"]
    return record


def test_it_skips_a_record_without_a_sequence_number_and_says_so_with_a_gap(fake_source):
    good = numbered("k", 2)
    bad = without_sequence_number(stream_record(sequence_number="0", pk="bad", new={}))
    fake = FakeStreams([FakeShard("shardId-1", records=[good[0], bad, good[1]])])
    source = fake_source(fake)

    read_until_idle(source_id=source.pk)

    assert sorted(ChangeRecord.objects.values_list("keys__pk__S", flat=True)) == ["k0", "k1"]
    gap = Gap.objects.get(source=source)
    assert gap.after_sequence_number == good[0]["dynamodb"]["SequenceNumber"]
    assert "without a usable sequence number" in gap.reason


def test_it_writes_no_gap_for_an_unusable_record_once_the_lease_is_gone(fake_source):
    source = fake_source(FakeStreams([FakeShard("shardId-1", records=numbered("k", 1))]))
    sync(source)
    shard_id, owner = claim_one()
    Shard.objects.filter(pk=shard_id).update(lease_owner="another-reader")
    shard = Shard.objects.select_related("stream__source").get(pk=shard_id)
    bad = without_sequence_number(stream_record(sequence_number="0", pk="bad", new={}))

    saved = records_save(shard=shard, owner=owner, records=[bad], finished=False)

    assert saved is None
    assert not Gap.objects.exists()

"""When a TrimmedDataAccessException is a gap (streams.reading.trim_loss_find), against the fake
Streams API (tests/support/fake_streams.py): DynamoDB Local never trims. What DynamoDB Local's
own spurious TrimmedDataAccessException looks like is in test_trimmed_reads.py.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from streams.models import ChangeRecord, Gap, Shard, StreamSource
from streams.reading import shard_poll
from tests.support.fake_sources import claim_one, numbered, sync
from tests.support.fake_streams import TRIMMED_MESSAGE, FakeShard, FakeStreams, aws_error, stream_record
from tests.support.readers import Readers, read_until_idle

pytestmark = pytest.mark.django_db


def test_it_records_a_gap_and_continues_when_data_was_trimmed(fake_source):
    shard = FakeShard("shardId-1", records=numbered("k", 2))
    fake = FakeStreams([shard])
    source = fake_source(fake)
    read_until_idle(source_id=source.pk)
    # 24 hours pass: what followed our checkpoint is gone, newer records remain.
    shard.records[:] = numbered("late", 2, start=100)
    fake.errors["GetShardIterator"] = [aws_error("TrimmedDataAccessException", "GetShardIterator")]

    read_until_idle(source_id=source.pk)

    gap = Gap.objects.get(source=source)
    assert gap.after_sequence_number == f"{2:021d}"
    assert "24-hour retention" in gap.reason
    assert ChangeRecord.objects.count() == 4


# When a TrimmedDataAccessException is a gap (streams.reading.trim_loss_find). Time does not
# move in the fake: each record is stamped with the age it has when the reads below happen.
# AWS keeps stream records 24 hours, then trims them; it raises TrimmedDataAccessException for
# an AFTER_SEQUENCE_NUMBER behind the trim point, or for an iterator whose record was trimmed
# before GetRecords used it (API reference, DynamoDB Streams, TrimmedDataAccessException).


def aged(prefix, count, *, start, hours):
    """Records written `hours` ago, stamped to the second as AWS stamps them."""
    at = (timezone.now() - timedelta(hours=hours)).replace(microsecond=0)
    return [
        stream_record(sequence_number=f"{start + i:021d}", pk=f"{prefix}{i}", new={}, written_at=at)
        for i in range(count)
    ]


def stamp(records) -> str:
    at = datetime.fromtimestamp(records[-1]["dynamodb"]["ApproximateCreationDateTime"], UTC)
    return f"written {at:%Y-%m-%d %H:%M:%S} UTC"


def keys(source):
    return sorted(ChangeRecord.objects.filter(source=source).values_list("keys__pk__S", flat=True))


def trimmed(operation):
    return aws_error("TrimmedDataAccessException", operation, TRIMMED_MESSAGE)


def test_it_claims_a_gap_after_a_checkpoint_older_than_the_retention(fake_source):
    read = aged("old", 2, start=1, hours=30)
    shard = FakeShard("shardId-1", records=list(read))
    source = fake_source(FakeStreams([shard]))
    read_until_idle(source_id=source.pk)
    # Shardwatch stopped for a day; what it had read and the next record went past 24 hours.
    shard.records.extend([*aged("lost", 1, start=10, hours=25), *aged("late", 2, start=20, hours=2)])
    shard.trim(3)

    read_until_idle(source_id=source.pk)

    gap = Gap.objects.get(source=source)
    assert gap.after_sequence_number == f"{2:021d}"
    assert f"Records after sequence number {2:021d} (the last record Shardwatch read from this shard" in gap.reason
    assert stamp(read) in gap.reason
    assert "24-hour retention" in gap.reason and TRIMMED_MESSAGE in gap.reason
    assert keys(source) == ["late0", "late1", "old0", "old1"]
    assert Shard.objects.get().checkpoint == f"{21:021d}"


def test_it_claims_a_gap_when_the_next_iterator_of_a_read_chain_points_at_a_trimmed_record(fake_source):
    shard = FakeShard("shardId-1", records=aged("old", 2, start=1, hours=30))
    source = fake_source(FakeStreams([shard]))
    readers = Readers(source_ids=[source.pk])
    try:
        readers.until_idle()  # holds the NextShardIterator after the second record
        shard.records.extend([*aged("lost", 1, start=10, hours=25), *aged("late", 1, start=20, hours=2)])
        shard.trim(3)

        readers.until_idle()
    finally:
        readers.stop()

    gap = Gap.objects.get(source=source)
    assert gap.after_sequence_number == f"{2:021d}"
    assert keys(source) == ["late0", "old0", "old1"]


def test_it_claims_a_gap_when_the_checkpoint_record_is_no_longer_stored(fake_source):
    shard = FakeShard("shardId-1", records=aged("old", 2, start=1, hours=50))
    source = fake_source(FakeStreams([shard]))
    read_until_idle(source_id=source.pk)
    ChangeRecord.objects.all().delete()  # Shardwatch's own retention, a day at least, removed them
    shard.records.extend(aged("late", 1, start=20, hours=2))
    shard.trim(2)

    read_until_idle(source_id=source.pk)

    gap = Gap.objects.get(source=source)
    assert gap.after_sequence_number == f"{2:021d}"
    assert "written" not in gap.reason  # its time is not known, so the gap does not state one
    assert keys(source) == ["late0"]


@pytest.mark.parametrize("operation", ["GetShardIterator", "GetRecords"])
def test_it_claims_no_gap_when_records_after_the_checkpoint_are_younger_than_the_retention(fake_source, operation):
    shard = FakeShard("shardId-1", records=aged("k", 2, start=1, hours=1))
    fake = FakeStreams([shard])
    source = fake_source(fake)
    read_until_idle(source_id=source.pk)
    shard.records.extend(aged("new", 2, start=10, hours=0))
    # Nothing written in the last hour can have been trimmed, whatever the error says.
    fake.errors[operation] = [trimmed(operation)]

    read_until_idle(source_id=source.pk)

    assert not Gap.objects.exists()
    assert keys(source) == ["k0", "k1", "new0", "new1"]
    assert fake.operations("GetShardIterator")[-1]["Type"] == "TRIM_HORIZON"
    assert Shard.objects.get().checkpoint == f"{11:021d}"


@pytest.mark.parametrize("operation", ["GetShardIterator", "GetRecords"])
def test_it_claims_no_gap_and_backs_off_when_a_read_from_the_start_of_a_shard_is_trimmed(fake_source, operation):
    # DynamoDB Local's case (aws/aws-sdk-java#2923): an iterator at the start of a shard with no
    # checkpoint fails, again and again when writes keep racing the reader.
    fake = FakeStreams([FakeShard("shardId-1", records=aged("k", 2, start=1, hours=0))])
    source = fake_source(fake)
    sync(source)
    shard_id, owner = claim_one()
    fake.errors[operation] = [trimmed(operation)] * 3

    polls = []
    for _ in range(4):
        polls.append(shard_poll(shard_id=shard_id, owner=owner, error_count=polls[-1].error_count if polls else 0))

    assert not Gap.objects.exists()
    assert [poll.error_count for poll in polls] == [1, 2, 3, 0]
    # The first retry at the shortest interval (DynamoDB Local's quirk delays a record for
    # nothing otherwise), the next ones backed off, never a busy loop.
    assert polls[0].delay_s == 0.2
    assert all(0.2 <= poll.delay_s <= max(0.2, 0.5 * 2**poll.error_count) for poll in polls[1:3])
    assert polls[3].saved == 2
    assert {call["Type"] for call in fake.operations("GetShardIterator")} == {"TRIM_HORIZON"}
    source.refresh_from_db()
    assert source.status == StreamSource.Status.ACTIVE and source.last_error == ""
    assert Shard.objects.get(pk=shard_id).error_count == 0


def test_it_shows_on_the_shard_why_a_trimmed_read_is_retried(fake_source):
    fake = FakeStreams([FakeShard("shardId-1", records=aged("k", 1, start=1, hours=0))])
    source = fake_source(fake)
    sync(source)
    shard_id, owner = claim_one()
    fake.errors["GetRecords"] = [trimmed("GetRecords")]

    shard_poll(shard_id=shard_id, owner=owner)

    shard = Shard.objects.get(pk=shard_id)
    assert shard.error_count == 1
    assert shard.last_error.startswith(f"TrimmedDataAccessException: {TRIMMED_MESSAGE}")
    assert "nothing was lost" in shard.last_error


def test_it_claims_no_gap_when_a_latest_position_is_trimmed_and_reads_what_followed(fake_source):
    shard = FakeShard("shardId-1", records=aged("before", 1, start=1, hours=3))
    fake = FakeStreams([shard])
    source = fake_source(fake)
    StreamSource.objects.filter(pk=source.pk).update(start_position=StreamSource.StartPosition.LATEST)
    sync(source)
    shard_id, owner = claim_one()
    at_latest = shard_poll(shard_id=shard_id, owner=owner)
    shard.records.extend(aged("after", 2, start=10, hours=0))
    fake.errors["GetRecords"] = [trimmed("GetRecords")]

    failed = shard_poll(shard_id=shard_id, owner=owner, iterator=at_latest.iterator)
    resumed = shard_poll(shard_id=shard_id, owner=owner, error_count=failed.error_count)

    assert not Gap.objects.exists()
    # A new LATEST would skip after0 and after1. TRIM_HORIZON skips nothing, at the price of
    # reading a record from before the source was added.
    assert fake.operations("GetShardIterator")[-1]["Type"] == "TRIM_HORIZON"
    assert resumed.saved == 3
    assert keys(source) == ["after0", "after1", "before0"]


def child_of(parent_id):
    """A child shard whose two first records are about to pass 24 hours."""
    return FakeShard(
        "shardId-child",
        parent=parent_id,
        records=[*aged("first", 2, start=100, hours=24.5), *aged("later", 2, start=200, hours=1)],
    )


def read_then_child(fake_source, ancestors, child, *, before_child_read):
    """Read `ancestors` to their end; then `child` appears, and `before_child_read(fake)`
    happens between the child's GetShardIterator and its first GetRecords."""
    fake = FakeStreams(ancestors)
    source = fake_source(fake)
    read_until_idle(source_id=source.pk)
    assert not Shard.objects.exclude(state=Shard.State.FINISHED).exists()
    fake.shards[child.shard_id] = child
    fake.before["GetRecords"] = [lambda: before_child_read(fake)]
    read_until_idle(source_id=source.pk)
    return source


def trim_first_two(fake):
    fake.shards["shardId-child"].trim(2)


def fail_as_trimmed(fake):
    fake.errors["GetRecords"] = [trimmed("GetRecords")]


def test_it_claims_a_gap_when_a_childs_first_records_are_trimmed_after_an_old_parent(fake_source):
    # The race on real AWS: Shardwatch read the parent's last record just inside the 24 hours,
    # and the child's first records, written after it, went past 24 hours before the child was
    # read. They were owed: they follow a record Shardwatch read.
    parent_records = aged("parent", 2, start=1, hours=24.6)
    parent = FakeShard("shardId-parent", records=list(parent_records), closed=True)

    source = read_then_child(fake_source, [parent], child_of("shardId-parent"), before_child_read=trim_first_two)

    gap = Gap.objects.get(source=source)
    assert gap.shard.shard_id == "shardId-child"
    assert gap.after_sequence_number == ""
    assert "Records at the start of this shard were trimmed" in gap.reason
    assert f"sequence number {2:021d}, the last record Shardwatch read from the shard shardId-parent" in gap.reason
    assert stamp(parent_records) in gap.reason
    assert keys(source) == ["later0", "later1", "parent0", "parent1"]


def test_it_claims_a_gap_for_a_child_from_the_nearest_ancestor_it_read(fake_source):
    grandparent = FakeShard("shardId-grandparent", records=aged("gp", 1, start=1, hours=26), closed=True)
    parent = FakeShard("shardId-parent", parent="shardId-grandparent", closed=True)

    source = read_then_child(
        fake_source, [grandparent, parent], child_of("shardId-parent"), before_child_read=trim_first_two
    )

    gap = Gap.objects.get(source=source)
    assert gap.shard.shard_id == "shardId-child"
    assert "the last record Shardwatch read from the shard shardId-grandparent" in gap.reason
    assert keys(source) == ["gp0", "later0", "later1"]


def test_it_claims_no_gap_for_a_trimmed_child_whose_parent_ended_within_the_retention(fake_source):
    # The child holds nothing older than its parent's last record, read an hour after it was
    # written: nothing in the child can have been trimmed, whatever the error says.
    parent = FakeShard("shardId-parent", records=aged("parent", 2, start=1, hours=1), closed=True)
    child = child_of("shardId-parent")
    child.records[:2] = aged("first", 2, start=100, hours=0.9)

    source = read_then_child(fake_source, [parent], child, before_child_read=fail_as_trimmed)

    assert not Gap.objects.exists()
    assert keys(source) == ["first0", "first1", "later0", "later1", "parent0", "parent1"]


def test_it_claims_no_gap_for_a_trimmed_child_when_no_ancestor_had_a_record(fake_source):
    # Nothing Shardwatch read comes before the child's records, so nothing marks them as owed
    # or places them in time: TRIM_HORIZON reads what the shard still holds, as it does for a
    # shard with no parent.
    parent = FakeShard("shardId-parent", closed=True)

    source = read_then_child(fake_source, [parent], child_of("shardId-parent"), before_child_read=trim_first_two)

    assert not Gap.objects.exists()
    assert keys(source) == ["later0", "later1"]


def test_it_claims_one_gap_when_the_read_after_a_gap_is_trimmed_again(fake_source):
    shard = FakeShard("shardId-1", records=aged("old", 2, start=1, hours=30))
    fake = FakeStreams([shard])
    source = fake_source(fake)
    read_until_idle(source_id=source.pk)
    shard.records.extend([*aged("lost", 2, start=10, hours=25), *aged("late", 1, start=20, hours=2)])
    shard.trim(3)
    # Retention trims the oldest remaining record while the reader resumes from TRIM_HORIZON.
    fake.before["GetRecords"] = [lambda: shard.trim(1)]

    read_until_idle(source_id=source.pk)

    assert Gap.objects.filter(source=source).count() == 1
    assert keys(source) == ["late0", "old0", "old1"]


def test_it_leaves_gaps_and_checkpoints_to_the_reader_that_holds_the_lease(fake_source):
    shard = FakeShard("shardId-1", records=aged("old", 2, start=1, hours=30))
    fake = FakeStreams([shard])
    source = fake_source(fake)
    read_until_idle(source_id=source.pk)
    shard.records.extend(aged("late", 1, start=20, hours=2))
    shard.trim(2)
    shard_id, owner = claim_one()
    # Another reader takes the shard over while this one waits for GetShardIterator.
    fake.before["GetShardIterator"] = [lambda: Shard.objects.filter(pk=shard_id).update(lease_owner="another")]

    poll = shard_poll(shard_id=shard_id, owner=owner)

    assert not poll.keep_reading
    assert not Gap.objects.exists()
    assert Shard.objects.get(pk=shard_id).checkpoint == f"{2:021d}"

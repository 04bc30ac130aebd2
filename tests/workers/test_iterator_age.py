"""A trigger's iterator age (workers.selectors.triggers_iterator_age): the age of the oldest
stored record it has not processed yet, kept on write in TriggerCursor.pending_since.

Record times are chosen through the fake Streams API (tests/support/fake_streams.py), since
DynamoDB Local rounds them to the minute; one test reads DynamoDB Local for exactly that.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from streams import aws
from streams.models import ChangeRecord
from streams.reader import Reader
from streams.retention import records_expire
from streams.signals import batch_saved, records_expired
from tests.support.fake_sources import fake_source_create, sync
from tests.support.fake_streams import FakeShard, FakeStreams
from tests.support.triggering import run_until_idle, trigger_for
from workers.cursors import cursors_ensure, cursors_reset
from workers.models import Trigger, TriggerCursor
from workers.runner import cursor_process
from workers.cursors import cursors_claim
from workers.selectors import triggers_iterator_age
from workers.tasks import mark_cursors_pending

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stream():
    """A fake stream of one shard, its source, and `stream.read()` to save what it holds."""
    fake = FakeStreams([FakeShard("shardId-00000")])
    source = fake_source_create(fake)
    sync(source)
    reader = Reader(threads=2)

    def read():
        reader.leases_renew()
        reader.leases_balance()
        return reader.polls_round()

    fake.source, fake.read = source, read
    yield fake
    reader.close()
    aws.forget_clients()


def age(trigger) -> float:
    return triggers_iterator_age(now=timezone.now(), trigger_ids=[trigger.pk])[trigger.pk]


def written(seconds_ago: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds_ago)


def test_it_ages_a_trigger_from_its_oldest_unprocessed_record_until_it_catches_up(stream):
    trigger = trigger_for(stream.source, "record_batches")
    cursors_ensure(trigger=trigger)
    assert age(trigger) == 0.0
    stream.records_append(shard_id="shardId-00000", count=2, written_at=written(120))

    assert stream.read() == 2
    assert 119 <= age(trigger) <= 123

    run_until_idle(trigger)
    assert age(trigger) == 0.0
    assert TriggerCursor.objects.get(trigger=trigger).pending_since is None


def test_it_moves_the_age_to_the_next_record_after_each_batch(stream):
    stream.records_append(shard_id="shardId-00000", count=2, written_at=written(300))
    stream.records_append(shard_id="shardId-00000", count=2, written_at=written(100))
    stream.read()
    trigger = trigger_for(stream.source, "record_batches", batch_size=2)
    cursors_ensure(trigger=trigger)  # made after the records: they wait since they were written
    assert 299 <= age(trigger) <= 303

    [(cursor_id, owner)] = cursors_claim(trigger_id=trigger.pk)
    cursor_process(cursor_id=cursor_id, owner=owner)

    assert 99 <= age(trigger) <= 103
    cursors_reset(trigger=trigger, position="TRIM_HORIZON")
    assert 299 <= age(trigger) <= 303


def test_it_counts_from_when_records_were_received_where_their_times_are_rounded(orders_table):
    orders_table.put("k1")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches")
    cursors_ensure(trigger=trigger)
    first = ChangeRecord.objects.get(source=orders_table)
    assert TriggerCursor.objects.get(trigger=trigger).pending_since == first.received_at
    run_until_idle(trigger)
    orders_table.put("k2")

    orders_table.ingest()

    # DynamoDB Local rounds ApproximateCreationDateTime down to the minute: up to 60 s of false age.
    second = ChangeRecord.objects.exclude(pk=first.pk).get(source=orders_table)
    assert TriggerCursor.objects.get(trigger=trigger).pending_since == second.received_at
    assert age(trigger) < 5


def test_it_reads_every_triggers_age_in_two_queries(stream, django_assert_num_queries):
    triggers = [
        Trigger.objects.create(name=f"t{i}", source=stream.source, target=Trigger.Target.PYTHON,
                               handler="tests.handlers.triggers.record_batches")
        for i in range(5)
    ]
    for trigger in triggers:
        cursors_ensure(trigger=trigger)
    stream.records_append(shard_id="shardId-00000", count=1, written_at=written(60))
    stream.read()

    with django_assert_num_queries(2):
        ages = triggers_iterator_age(now=timezone.now())

    assert set(ages) == {trigger.pk for trigger in triggers}
    assert all(59 <= value <= 63 for value in ages.values())


def test_it_stays_caught_up_when_the_batches_mark_comes_after_the_runner_read_it(stream):
    """The mark runs once the batch has committed (batch_saved); a runner may read the batch and
    catch up in between. The receiver is held back here to take exactly that order."""
    trigger = trigger_for(stream.source, "record_batches")
    cursors_ensure(trigger=trigger)
    held = []

    def hold(sender, **kwargs):
        held.append(kwargs)

    batch_saved.disconnect(dispatch_uid="workers.mark_cursors_pending")
    batch_saved.connect(hold, dispatch_uid="test.hold")
    try:
        stream.records_append(shard_id="shardId-00000", count=2, written_at=written(120))
        assert stream.read() == 2
        run_until_idle(trigger)
    finally:
        batch_saved.disconnect(dispatch_uid="test.hold")
        batch_saved.connect(mark_cursors_pending, dispatch_uid="workers.mark_cursors_pending")
    [saved] = held

    mark_cursors_pending(sender=ChangeRecord, **saved)

    assert TriggerCursor.objects.get(trigger=trigger).pending_since is None
    assert age(trigger) == 0.0


def test_it_stops_ageing_a_trigger_once_retention_deleted_what_it_waited_for(stream):
    trigger = trigger_for(stream.source, "record_batches")
    cursors_ensure(trigger=trigger)
    Trigger.objects.filter(pk=trigger.pk).update(enabled=False)
    stream.records_append(shard_id="shardId-00000", count=2, written_at=written(120))
    assert stream.read() == 2
    assert 119 <= age(trigger) <= 123

    enforce_retention_at(timezone.now() + timedelta(days=30))
    Trigger.objects.filter(pk=trigger.pk).update(enabled=True)
    run_until_idle(trigger)

    assert not ChangeRecord.objects.filter(source=stream.source).exists()
    assert TriggerCursor.objects.get(trigger=trigger).pending_since is None
    assert age(trigger) == 0.0


def enforce_retention_at(now):
    """streams.tasks.enforce_retention, as of `now`."""
    records_expire(now=now)
    records_expired.send(sender=ChangeRecord)

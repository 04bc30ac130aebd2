"""Trigger cursors on a source of many shards: the dispatcher makes them on every round, so the
cost must not grow with the shard count. DynamoDB Local has one shard per table, so the shards
here are rows made directly, as discovery would make them from DescribeStream."""

from datetime import timedelta

import pytest
from django.utils import timezone

from streams.models import ChangeRecord, Shard, Stream, StreamSource, sequence_key
from tests.support.triggering import trigger_for
from workers.cursors import cursors_ensure
from workers.models import Trigger, TriggerCursor

pytestmark = pytest.mark.django_db

SHARDS = 500


@pytest.fixture
def wide_source():
    source = StreamSource.objects.create(table_name="wide", region="us-east-1", status=StreamSource.Status.ACTIVE)
    stream = Stream.objects.create(source=source, arn="arn:aws:dynamodb:us-east-1:123456789012:table/wide/stream/x")
    Shard.objects.bulk_create([Shard(stream=stream, shard_id=f"shardId-{i:05d}") for i in range(SHARDS)])
    return source


def stored(source, shard, number, *, received_at):
    sequence_number = f"{number:021d}"
    return ChangeRecord.objects.create(
        source=source, shard=shard, sequence_number=sequence_number, sequence_key=sequence_key(sequence_number),
        event_id=f"e{number}", event_name="INSERT", keys={"pk": {"S": "k"}}, item_key="k", received_at=received_at,
        approximate_creation_time=received_at, size_bytes=1,
    )


def test_it_makes_a_cursor_for_every_shard_and_lane_in_a_few_queries(wide_source, django_assert_max_num_queries):
    trigger = trigger_for(wide_source, "record_batches", parallelization_factor=2)

    with django_assert_max_num_queries(4):
        made = cursors_ensure(trigger=trigger)
    with django_assert_max_num_queries(2):
        again = cursors_ensure(trigger=trigger)

    assert (made, again) == (SHARDS * 2, 0)
    assert TriggerCursor.objects.filter(trigger=trigger).count() == SHARDS * 2


def test_it_starts_latest_cursors_after_what_was_saved_before_the_trigger(wide_source):
    shards = list(Shard.objects.order_by("shard_id")[:3])
    created_at = timezone.now()
    stored(wide_source, shards[0], 5, received_at=created_at - timedelta(minutes=2))
    stored(wide_source, shards[0], 9, received_at=created_at - timedelta(minutes=1))
    stored(wide_source, shards[1], 7, received_at=created_at + timedelta(seconds=1))  # after: read by the trigger
    trigger = trigger_for(wide_source, "record_batches", starting_position=Trigger.StartingPosition.LATEST)
    Trigger.objects.filter(pk=trigger.pk).update(created_at=created_at)
    trigger.refresh_from_db()

    cursors_ensure(trigger=trigger)

    positions = dict(TriggerCursor.objects.filter(trigger=trigger, shard__in=shards).values_list("shard__shard_id", "position"))
    assert positions == {shards[0].shard_id: sequence_key(f"{9:021d}"), shards[1].shard_id: "", shards[2].shard_id: ""}

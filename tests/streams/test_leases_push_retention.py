import asyncio
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.utils import timezone

from streams.models import ChangeRecord, Shard
from streams.reading import shard_poll
from tests.support.readers import read_until_idle, shards_claim
from streams.retention import records_expire
from streams.sources import source_add, source_discover

pytestmark = pytest.mark.django_db


@pytest.fixture
def watched(make_table, dynamodb):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    source_discover(source_id=source.pk)

    def put(pk, **attributes):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": pk}, **attributes})

    return source, put


def test_it_lets_only_one_reader_hold_a_shard(watched):
    claimed = shards_claim()
    assert len(claimed) == 1
    assert shards_claim() == []


def test_it_hands_an_expired_lease_to_another_reader_and_stops_the_old_one(watched):
    source, put = watched
    [(shard_id, first_owner)] = shards_claim()
    shard_poll(shard_id=shard_id, owner=first_owner)
    # The first reader stops renewing (its worker died): after the lease runs out, the shard is free.
    Shard.objects.filter(pk=shard_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    [(same_shard, second_owner)] = shards_claim()
    put("written-after-takeover")

    stale = shard_poll(shard_id=shard_id, owner=first_owner)
    taken = shard_poll(shard_id=shard_id, owner=second_owner)

    assert same_shard == shard_id and second_owner != first_owner
    assert not stale.keep_reading
    assert taken.saved == 1
    assert Shard.objects.get(pk=shard_id).lease_owner == second_owner


def test_it_does_not_lease_shards_of_a_disabled_source(watched):
    source, _ = watched
    source.enabled = False
    source.save()
    assert shards_claim() == []


def test_it_sends_one_channel_message_per_saved_batch(watched, django_capture_on_commit_callbacks):
    source, put = watched
    layer = get_channel_layer()

    async def subscribe():
        channel = await layer.new_channel()
        await layer.group_add(source.group_name, channel)
        return channel

    channel = asyncio.run(subscribe())
    for number in range(3):
        put(f"k{number}", total={"N": str(number)})

    with django_capture_on_commit_callbacks(execute=True):
        read_until_idle(source_id=source.pk)

    async def receive_all():
        messages = [await asyncio.wait_for(layer.receive(channel), 5)]
        try:
            while True:
                messages.append(await asyncio.wait_for(layer.receive(channel), 0.5))
        except TimeoutError:
            pass
        await layer.group_discard(source.group_name, channel)
        return messages

    messages = asyncio.run(receive_all())
    assert len(messages) == 1
    [message] = messages
    assert message["type"] == "records.batch"
    assert message["source_id"] == source.pk
    rows = message["records"]
    ids = list(ChangeRecord.objects.filter(source=source).order_by("sequence_key").values_list("id", flat=True))
    assert [row["id"] for row in rows] == ids
    assert [row["key"] for row in rows] == ["pk=k0", "pk=k1", "pk=k2"]
    assert {row["event_name"] for row in rows} == {"INSERT"}
    assert rows[1]["summary"].startswith("+")
    assert message["last_id"] == ids[-1]


def test_it_deletes_records_past_retention_in_batches(watched):
    source, put = watched
    for number in range(5):
        put(f"k{number}")
    read_until_idle(source_id=source.pk)
    old = list(ChangeRecord.objects.order_by("id").values_list("id", flat=True)[:3])
    ChangeRecord.objects.filter(pk__in=old).update(approximate_creation_time=timezone.now() - timedelta(days=8))

    deleted = records_expire(batch_size=2)

    assert deleted == 3
    assert ChangeRecord.objects.filter(source=source).count() == 2
    assert not ChangeRecord.objects.filter(pk__in=old).exists()

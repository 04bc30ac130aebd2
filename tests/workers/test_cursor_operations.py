"""An operator's skip and bisect of the batch a cursor retries (workers.operations), from
DynamoDB Local and a failing Python handler: they act on the cursor's own batch, whatever
else was sent on its shard, and count like the runner's. Counts are taken as transactions
commit, hence transactional tests."""

import pytest

from streams.models import ChangeRecord
from tests.support.meters import meter_value
from tests.support.triggering import retry_rounds, trigger_for
from workers.models import DeadLetter, Invocation, TriggerCursor
from workers.operations import cursor_batch_bisect, cursor_batch_skip, records_replay
from workers.selectors import cursor_failing_batch, cursors_retrying

pytestmark = pytest.mark.django_db(transaction=True)


def record(orders_table, key):
    return ChangeRecord.objects.get(source=orders_table, partition_key=key)


def retrying_a_with_b_and_c_replayed(orders_table, **settings):
    """A cursor retrying record a; then b and c arrive and an operator replays them."""
    orders_table.put("a")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=-1, **settings)
    retry_rounds(trigger, 3)
    orders_table.put("b")
    orders_table.put("c")
    orders_table.ingest()
    records_replay(trigger=trigger, records=[record(orders_table, "b"), record(orders_table, "c")])
    return trigger, TriggerCursor.objects.get(trigger=trigger)


def test_it_skips_the_cursors_own_batch_not_a_replay(orders_table):
    trigger, cursor = retrying_a_with_b_and_c_replayed(orders_table, batch_size=1)
    a = record(orders_table, "a")
    last_run = Invocation.objects.filter(trigger=trigger, record_ids=[a.pk]).order_by("-id").first()

    letter = cursor_batch_skip(cursor_id=cursor.pk, who="owner")

    assert letter.record_ids == [a.pk] and letter.invocation_id == last_run.pk
    cursor.refresh_from_db()
    assert cursor.position == a.sequence_key and cursor.attempt == 0
    assert DeadLetter.objects.filter(trigger=trigger, record_ids__contains=[a.pk]).count() == 1


def test_it_names_the_cursors_batch_and_last_invocation_not_a_replays(orders_table):
    trigger, cursor = retrying_a_with_b_and_c_replayed(orders_table, batch_size=2)
    a, b = record(orders_table, "a"), record(orders_table, "b")
    last_run = Invocation.objects.filter(trigger=trigger, record_ids=[a.pk]).order_by("-id").first()

    [item] = cursors_retrying(trigger_ids=[trigger.pk], min_attempt=1)
    invocation, records = cursor_failing_batch(cursor=cursor)

    assert item["first_record_id"] == a.pk and item["invocation"] == last_run
    # The batch the runner sends next: a, and b which arrived since, up to BatchSize.
    assert invocation == last_run and [r.pk for r in records] == [a.pk, b.pk]


def test_it_skips_the_rest_of_a_batch_after_a_partial_failure(orders_table):
    orders_table.put("a")
    orders_table.put("b", fail="yes")
    orders_table.put("c", fail="yes")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "report_failure_always", report_batch_item_failures=True,
                          maximum_retry_attempts=-1)
    retry_rounds(trigger, 1)
    cursor = TriggerCursor.objects.get(trigger=trigger)
    a, b, c = (record(orders_table, key) for key in "abc")
    assert cursor.position == a.sequence_key and cursor.attempt >= 1

    letter = cursor_batch_skip(cursor_id=cursor.pk, who="owner")

    assert letter.record_ids == [b.pk, c.pk]
    cursor.refresh_from_db()
    assert cursor.position == c.sequence_key


def test_it_counts_an_operators_bisect_and_skip_as_the_runners_are(orders_table):
    for key in "abc":
        orders_table.put(key)
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=-1)
    retry_rounds(trigger, 2)
    cursor = TriggerCursor.objects.get(trigger=trigger)

    assert cursor_batch_bisect(cursor_id=cursor.pk) == 1
    assert meter_value("shardwatch_trigger_bisects_total", trigger=trigger.pk) == 1

    retry_rounds(trigger, 1)
    cursor_batch_skip(cursor_id=cursor.pk, who="owner")
    assert meter_value("shardwatch_trigger_dead_letters_total", trigger=trigger.pk) == 1

"""What trigger runners count (meters.store): invocations by outcome, batch durations, records
sent and filtered out, retries, bisects and dead letters. End to end from DynamoDB Local.
Counts are taken as the runner's transaction commits, hence transactional tests."""

import pytest

from tests.support.meters import meter_value
from tests.support.triggering import run_until_idle, trigger_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_counts_invocations_records_sent_and_filtered_and_batch_durations(orders_table):
    orders_table.put("k1", status="NEW")
    orders_table.put("k2", status="NEW")
    orders_table.put("k1", status="SHIPPED")  # a MODIFY
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", filter_patterns=['{"eventName": ["MODIFY"]}'])

    run_until_idle(trigger)

    assert meter_value("shardwatch_trigger_invocations_total", trigger=trigger.pk, outcome="success") == 1
    assert meter_value("shardwatch_trigger_records_sent_total", trigger=trigger.pk) == 1
    assert meter_value("shardwatch_trigger_records_filtered_total", trigger=trigger.pk) == 2
    assert meter_value("shardwatch_trigger_batch_duration_seconds_count", trigger=trigger.pk) == 1
    assert meter_value("shardwatch_trigger_batch_duration_seconds_bucket", trigger=trigger.pk, le="+Inf") == 1


def test_it_counts_retries_and_dead_letters_by_batch_and_by_record(orders_table):
    for key in ("k1", "k2", "k3"):
        orders_table.put(key)
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=2)

    run_until_idle(trigger)

    assert meter_value("shardwatch_trigger_invocations_total", trigger=trigger.pk, outcome="function_error") == 3
    assert meter_value("shardwatch_trigger_retries_total", trigger=trigger.pk) == 2
    # One batch of three records given up on: the dead letters count batches, as the list shows them.
    assert meter_value("shardwatch_trigger_dead_letters_total", trigger=trigger.pk) == 1
    assert meter_value("shardwatch_trigger_dead_letter_records_total", trigger=trigger.pk) == 3
    assert meter_value("shardwatch_trigger_bisects_total", trigger=trigger.pk) == 0


def test_it_counts_bisects(orders_table):
    orders_table.put("k1")
    orders_table.put("k2")
    orders_table.put("k3", poison="yes")
    orders_table.put("k4")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_on_poison", bisect_batch_on_function_error=True, maximum_retry_attempts=0)

    run_until_idle(trigger)

    # [k1..k4] fails and is split, [k1, k2] goes, [k3, k4] fails and is split, [k3] fails and is
    # dead-lettered, [k4] goes.
    assert meter_value("shardwatch_trigger_bisects_total", trigger=trigger.pk) == 2
    assert meter_value("shardwatch_trigger_dead_letters_total", trigger=trigger.pk) == 1
    assert meter_value("shardwatch_trigger_dead_letter_records_total", trigger=trigger.pk) == 1
    assert meter_value("shardwatch_trigger_invocations_total", trigger=trigger.pk, outcome="success") == 2
    assert meter_value("shardwatch_trigger_invocations_total", trigger=trigger.pk, outcome="function_error") == 3

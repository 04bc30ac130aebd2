"""Triggers end to end: put_item on DynamoDB Local, the readers save the records, and the
trigger runner sends them to a Python handler with Lambda's batching and failure semantics."""

import json

import pytest
from django.utils import timezone

from streams.models import ChangeRecord
from tests.handlers import triggers as trigger_handlers
from tests.support import handler_log
from tests.support.triggering import run_until_idle, trigger_for
from workers import batches
from workers.batches import ReadAhead
from workers.cursors import cursors_claim, cursors_ensure, cursors_reset, cursors_reset_to, lane_of
from workers.models import DeadLetter, Invocation, Trigger, TriggerCursor
from workers.operations import dead_letter_retry, pattern_try, records_replay
from workers.runner import CursorRunner, cursor_process, cursor_run

pytestmark = pytest.mark.django_db


def test_it_sends_records_in_order_in_batches_of_batch_size(orders_table):
    for number in range(5):
        orders_table.put(f"k{number}")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", batch_size=2)

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["k0", "k1"], ["k2", "k3"], ["k4"]]
    invocations = list(Invocation.objects.filter(trigger=trigger).order_by("id"))
    assert [i.outcome for i in invocations] == ["success"] * 3
    assert [i.record_count for i in invocations] == [2, 2, 1]
    last = ChangeRecord.objects.filter(source=orders_table).order_by("-sequence_key").first()
    assert TriggerCursor.objects.get(trigger=trigger).position == last.sequence_key


def test_it_skips_and_counts_records_no_pattern_matches(orders_table):
    orders_table.put("a", status="PENDING")
    orders_table.put("a", status="SHIPPED")
    orders_table.put("b", status="PENDING")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", filter_patterns=['{"eventName": ["MODIFY"]}'])

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["a"]]
    cursor = TriggerCursor.objects.get(trigger=trigger)
    assert cursor.filtered_total == 2
    assert cursor.position == ChangeRecord.objects.filter(source=orders_table).order_by("-sequence_key").first().sequence_key


def test_it_retries_a_failing_batch_then_dead_letters_it_and_moves_on(orders_table):
    orders_table.put("a")
    orders_table.put("b")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=2)

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["a", "b"]] * 3
    assert [i.attempt for i in Invocation.objects.filter(trigger=trigger).order_by("id")] == [0, 1, 2]
    assert set(Invocation.objects.filter(trigger=trigger).values_list("error_type", flat=True)) == {"ValueError"}
    letter = DeadLetter.objects.get(trigger=trigger)
    assert len(letter.record_ids) == 2 and "Retries exhausted" in letter.reason
    orders_table.put("c")
    orders_table.ingest()
    run_until_idle(trigger)
    assert trigger_handlers.calls()[-1] == ["c"]


def test_it_bisects_a_failing_batch_to_isolate_the_poison_record(orders_table):
    orders_table.put("k1")
    orders_table.put("k2")
    orders_table.put("k3", poison="yes")
    orders_table.put("k4")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_on_poison", bisect_batch_on_function_error=True, maximum_retry_attempts=0)

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["k1", "k2", "k3", "k4"], ["k1", "k2"], ["k3", "k4"], ["k3"], ["k4"]]
    letter = DeadLetter.objects.get(trigger=trigger)
    assert ChangeRecord.objects.get(pk=letter.record_ids[0]).partition_key == "k3" and len(letter.record_ids) == 1
    bisected = Invocation.objects.filter(trigger=trigger, from_bisect=True).count()
    assert bisected == 4  # both halves of each split: [k1, k2], [k3, k4], then [k3], [k4]


def test_it_resends_from_the_lowest_reported_failure(orders_table):
    for number in range(4):
        orders_table.put(f"k{number}", **({"fail": "yes"} if number == 2 else {}))
    orders_table.ingest()
    trigger = trigger_for(orders_table, "report_failure_once", report_batch_item_failures=True)

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["k0", "k1", "k2", "k3"], ["k2", "k3"]]
    outcomes = list(Invocation.objects.filter(trigger=trigger).order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["partial_failure", "success"]


def test_it_fails_the_whole_batch_on_a_malformed_failure_report(orders_table):
    orders_table.put("k0")
    orders_table.put("k1")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "report_malformed_once", report_batch_item_failures=True)

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["k0", "k1"], ["k0", "k1"]]
    first = Invocation.objects.filter(trigger=trigger).order_by("id").first()
    assert first.outcome == "function_error" and first.error_type == "InvalidBatchItemFailures"


def test_it_takes_an_empty_list_response_as_success(orders_table):
    # AWS-recorded: localstack test_dynamodb_report_batch_item_success_scenarios[empty_list_success],
    # a handler returning [] under ReportBatchItemFailures is invoked once, and that is a success.
    orders_table.put("k0")
    orders_table.put("k1")
    orders_table.ingest()
    handler_log.answer_set("[]")
    trigger = trigger_for(orders_table, "answer_once", report_batch_item_failures=True, maximum_retry_attempts=3)

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["k0", "k1"]]
    assert list(Invocation.objects.filter(trigger=trigger).values_list("outcome", flat=True)) == ["success"]
    assert not DeadLetter.objects.filter(trigger=trigger).exists()
    last = ChangeRecord.objects.filter(source=orders_table).order_by("-sequence_key").first()
    assert TriggerCursor.objects.get(trigger=trigger).position == last.sequence_key


def test_it_discards_records_older_than_the_maximum_age(orders_table):
    orders_table.put("old")
    orders_table.put("new")
    orders_table.ingest()
    ChangeRecord.objects.filter(partition_key="old").update(
        approximate_creation_time=timezone.now() - timezone.timedelta(hours=2)
    )
    trigger = trigger_for(orders_table, "record_batches", maximum_record_age_s=3600)

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["new"]]
    discarded = Invocation.objects.get(trigger=trigger, outcome="discarded")
    assert discarded.record_count == 1
    assert DeadLetter.objects.get(trigger=trigger).invocation == discarded


def test_it_keeps_order_per_key_across_parallel_lanes(orders_table):
    for round_number in range(3):
        for key in ("a", "b", "c", "d", "e", "f"):
            orders_table.put(key, round=str(round_number))
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_sequence", parallelization_factor=3, batch_size=4)

    run_until_idle(trigger)

    assert TriggerCursor.objects.filter(trigger=trigger).count() == 3
    seen = trigger_handlers.seen()
    assert len(seen) == 18 and len(set(seen)) == 18  # every record once
    for key in "abcdef":
        numbers = [number for seen_key, number in seen if seen_key == key]
        assert numbers == sorted(numbers) and len(numbers) == 3
    # A batch never mixes lanes, so one key is never in flight in two batches at once.
    lane = {record.partition_key: lane_of(partition_key=record.partition_key, item_key=record.item_key, lanes=3) for record in ChangeRecord.objects.filter(source=orders_table)}
    assert all(len({lane[key] for key in batch}) == 1 for batch in trigger_handlers.calls())
    assert len({lane[key] for key in "abcdef"}) > 1


def test_it_starts_a_latest_trigger_after_what_is_stored(orders_table):
    orders_table.put("before")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", starting_position="LATEST")
    cursors_ensure(trigger=trigger)
    orders_table.put("after")
    orders_table.ingest()

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["after"]]


def test_it_resets_a_trigger_to_a_sequence_number_or_a_time(orders_table):
    for number in range(4):
        orders_table.put(f"k{number}")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches")
    run_until_idle(trigger)
    third = ChangeRecord.objects.filter(source=orders_table).order_by("sequence_key")[2]

    cursors_reset_to(trigger=trigger, sequence_number=third.sequence_number)
    run_until_idle(trigger)
    assert trigger_handlers.calls()[-1] == ["k2", "k3"]

    ChangeRecord.objects.filter(partition_key__in=["k0", "k1"]).update(
        approximate_creation_time=timezone.now() - timezone.timedelta(hours=1)
    )
    cursors_reset_to(trigger=trigger, at=timezone.now() - timezone.timedelta(minutes=30))
    run_until_idle(trigger)
    assert trigger_handlers.calls()[-1] == ["k2", "k3"]


def test_it_replays_records_and_retries_a_dead_letter_without_moving_the_cursor(orders_table):
    orders_table.put("a")
    orders_table.put("b")
    orders_table.ingest()
    failing = trigger_for(orders_table, "fail_always", maximum_retry_attempts=0)
    run_until_idle(failing)
    letter = DeadLetter.objects.get(trigger=failing)
    position = TriggerCursor.objects.get(trigger=failing).position
    Trigger.objects.filter(pk=failing.pk).update(handler="tests.handlers.triggers.record_batches")
    letter.trigger.refresh_from_db()

    invocations = dead_letter_retry(letter=letter)

    assert [invocation.outcome for invocation in invocations] == ["success"]
    assert trigger_handlers.calls()[-1] == ["a", "b"]
    letter.refresh_from_db()
    assert letter.retried_at is not None
    assert TriggerCursor.objects.get(trigger=failing).position == position


def stored(source) -> list[ChangeRecord]:
    return list(ChangeRecord.objects.filter(source=source).select_related("source", "shard__stream").order_by("sequence_key"))


def test_it_replays_and_gives_up_on_only_the_records_from_the_lowest_reported_failure(orders_table):
    for key in ("a", "b", "c"):
        orders_table.put(key)
    orders_table.ingest()
    records = stored(orders_table)
    handler_log.answer_set(json.dumps({"batchItemFailures": [{"itemIdentifier": records[1].sequence_number}]}))
    trigger = trigger_for(orders_table, "answer_once", report_batch_item_failures=True)

    [invocation] = records_replay(trigger=trigger, records=records)

    assert (invocation.outcome, invocation.record_count) == ("partial_failure", 3)
    # Lambda's rule: the records before the lowest reported failure succeeded.
    assert DeadLetter.objects.get(trigger=trigger).record_ids == [records[1].pk, records[2].pk]


def test_it_replays_with_a_malformed_response_as_a_whole_batch_failure(orders_table):
    orders_table.put("a")
    orders_table.put("b")
    orders_table.ingest()
    records = stored(orders_table)
    handler_log.answer_set('{"batchItemFailures": [{"itemIdentifier": ""}]}')
    trigger = trigger_for(orders_table, "answer_once", report_batch_item_failures=True)

    [invocation] = records_replay(trigger=trigger, records=records)

    assert (invocation.outcome, invocation.error_type) == ("function_error", "InvalidBatchItemFailures")
    assert invocation.error_message == (
        "The batchItemFailures response is malformed: batchItemFailures[0].itemIdentifier is empty."
    )
    assert DeadLetter.objects.get(trigger=trigger).record_ids == [record.pk for record in records]


def test_it_tries_the_filter_patterns_on_the_newest_records(orders_table):
    orders_table.put("a", status="PENDING")
    orders_table.put("b", status="SHIPPED")
    orders_table.ingest()
    trigger = trigger_for(
        orders_table, "record_batches", filter_patterns=['{"dynamodb":{"NewImage":{"status":{"S":["SHIPPED"]}}}}']
    )
    tried, matched = pattern_try(trigger=trigger, last=10)
    assert tried == 2
    assert [record.partition_key for record in matched] == ["b"]


def test_it_runs_the_demo_example_handler_with_partial_failures(orders_table, dynamodb):
    orders_table.put("ORDER#1", status="PENDING")
    orders_table.put("ORDER#2", status="PENDING")
    tracking = {"M": {"number": {"S": "TRK1"}, "carrier": {"S": "Yamato"}}}
    dynamodb.put_item(TableName=orders_table.table_name, Item={"pk": {"S": "ORDER#1"}, "status": {"S": "SHIPPED"}, "tracking": tracking})
    orders_table.put("ORDER#2", status="SHIPPED")  # no tracking: reported as failed
    orders_table.ingest()
    trigger = Trigger.objects.create(
        name="demo", source=orders_table, target=Trigger.Target.PYTHON, handler="demo.examples.notify_shipped",
        report_batch_item_failures=True, maximum_retry_attempts=2,
        filter_patterns=['{"eventName":["MODIFY"],"dynamodb":{"NewImage":{"status":{"S":["SHIPPED"]}}}}'],
    )

    run_until_idle(trigger)

    outcomes = list(Invocation.objects.filter(trigger=trigger).order_by("id").values_list("outcome", "record_count"))
    assert outcomes == [("partial_failure", 2), ("partial_failure", 1), ("partial_failure", 1)]
    letter = DeadLetter.objects.get(trigger=trigger)
    assert ChangeRecord.objects.get(pk=letter.record_ids[0]).partition_key == "ORDER#2"
    assert TriggerCursor.objects.get(trigger=trigger).filtered_total == 2


def test_it_waits_for_the_batching_window_unless_the_batch_is_full(orders_table):
    orders_table.put("a")
    orders_table.ingest()
    waiting = trigger_for(orders_table, "record_batches", maximum_batching_window_s=60, batch_size=2)
    cursors_ensure(trigger=waiting)
    [(cursor_id, owner)] = cursors_claim(trigger_id=waiting.pk)

    assert cursor_process(cursor_id=cursor_id, owner=owner) is False
    assert trigger_handlers.calls() == []
    assert TriggerCursor.objects.get(pk=cursor_id).next_attempt_at > timezone.now()

    orders_table.put("b")  # now a full batch: the window no longer matters
    orders_table.ingest()
    cursor_process(cursor_id=cursor_id, owner=owner)
    assert trigger_handlers.calls() == [["a", "b"]]


def test_it_caps_a_batch_at_six_megabytes_of_event(orders_table):
    for number in range(17):
        orders_table.put(f"big{number:02d}", blob="x" * (390 * 1024))
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", batch_size=10000)

    run_until_idle(trigger)

    sizes = list(Invocation.objects.filter(trigger=trigger).order_by("id").values_list("record_count", flat=True))
    assert sum(sizes) == 17 and len(sizes) == 2
    assert sizes[0] == 15  # 15 × 390 KB fit under Lambda's 6 MB payload limit; 16 would not


def test_it_keeps_other_triggers_going_while_one_is_stuck_on_a_poison_record(orders_table):
    orders_table.put("a")
    orders_table.ingest()
    stuck = trigger_for(orders_table, "fail_always")  # MaximumRetryAttempts -1: retries forever
    healthy = trigger_for(orders_table, "record_batches")

    run_until_idle(healthy)
    for _ in range(3):
        cursors_ensure(trigger=stuck)
        for cursor_id, owner in cursors_claim(trigger_id=stuck.pk):
            cursor_process(cursor_id=cursor_id, owner=owner)
            TriggerCursor.objects.lease_release(cursor_id, owner=owner)
        TriggerCursor.objects.filter(trigger=stuck).update(next_attempt_at=None)

    assert ["a"] in trigger_handlers.calls()
    assert Invocation.objects.filter(trigger=stuck, outcome="function_error").count() == 3
    assert Invocation.objects.filter(trigger=healthy, outcome="success").count() == 1
    assert not DeadLetter.objects.exists()


def test_it_starts_a_latest_trigger_at_its_creation_not_when_its_cursors_are_made(orders_table):
    orders_table.put("before")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", starting_position="LATEST")
    orders_table.put("meanwhile")  # saved after the trigger, before any dispatch made its cursor
    orders_table.ingest()

    run_until_idle(trigger)

    assert trigger_handlers.calls() == [["meanwhile"]]


def test_it_sends_a_backlog_through_one_runner_in_order_across_many_reads(orders_table, monkeypatch):
    monkeypatch.setattr(batches, "READ_AHEAD_ROWS", 3)  # so the backlog takes several reads
    for number in range(11):
        orders_table.put(f"k{number:02d}")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", batch_size=4)
    cursors_ensure(trigger=trigger)
    [(cursor_id, owner)] = cursors_claim(trigger_id=trigger.pk)

    cursor_run(cursor_id=cursor_id, owner=owner)

    assert trigger_handlers.calls() == [[f"k{n:02d}" for n in range(start, min(start + 4, 11))] for start in (0, 4, 8)]
    cursor = TriggerCursor.objects.get(pk=cursor_id)
    assert cursor.position == ChangeRecord.objects.filter(source=orders_table).order_by("-sequence_key").first().sequence_key
    assert cursor.lease_owner == ""


def test_it_reads_ahead_no_more_than_its_byte_budget(orders_table):
    for number in range(17):
        orders_table.put(f"big{number:02d}", blob="x" * (390 * 1024))
    orders_table.ingest()
    shard_id = ChangeRecord.objects.filter(source=orders_table).values_list("shard_id", flat=True).first()
    sizes = list(ChangeRecord.objects.filter(shard_id=shard_id).order_by("sequence_key").values_list("size_bytes", flat=True))
    fits = next(count for count in range(1, len(sizes) + 1) if sum(sizes[:count + 1]) > batches.READ_AHEAD_BYTES)
    ahead = ReadAhead(shard_id=shard_id, lane=0, lanes=1, region="us-east-1", stream_arn="arn")

    first = ahead.fill(need=10000)
    second = ahead.fill(need=10000)

    assert 1 < first == fits < 17
    assert (second, ahead.at_end) == (17 - first, True)
    assert [record.sequence_key for record in ahead.records] == sorted(
        ChangeRecord.objects.filter(shard_id=shard_id).values_list("sequence_key", flat=True)
    )[: first + second]


def running_after_one_batch(orders_table) -> tuple[Trigger, int, CursorRunner]:
    """A runner holding its cursor, one record sent and two to go."""
    for number in range(3):
        orders_table.put(f"k{number}")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", batch_size=1)
    cursors_ensure(trigger=trigger)
    [(cursor_id, owner)] = cursors_claim(trigger_id=trigger.pk)
    runner = CursorRunner(cursor_id=cursor_id, owner=owner)
    assert runner.step() is True
    return trigger, cursor_id, runner


def test_it_stops_a_run_whose_cursor_was_reset_and_keeps_the_reset_position(orders_table):
    trigger, cursor_id, runner = running_after_one_batch(orders_table)

    cursors_reset(trigger=trigger, position="TRIM_HORIZON")
    # At least once: the batch already read may still go out, but the run ends at its next write.
    runner.step()

    assert runner.step() is False
    assert TriggerCursor.objects.get(pk=cursor_id).position == ""
    assert trigger_handlers.calls()[0] == ["k0"] and len(trigger_handlers.calls()) <= 2


def test_it_stops_a_run_soon_after_its_trigger_is_disabled(orders_table, monkeypatch):
    trigger, _, runner = running_after_one_batch(orders_table)
    monkeypatch.setattr(CursorRunner, "TRIGGER_RELOAD_S", 0.0)

    Trigger.objects.filter(pk=trigger.pk).update(enabled=False)

    assert runner.step() is False
    assert trigger_handlers.calls() == [["k0"]]


def test_it_checks_every_cursor_for_work_in_one_query(orders_table, django_assert_num_queries):
    orders_table.put("a")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", parallelization_factor=10)
    run_until_idle(trigger)
    assert TriggerCursor.objects.filter(trigger=trigger).count() == 10

    with django_assert_num_queries(1):
        assert cursors_claim(trigger_id=trigger.pk) == []

    orders_table.put("b")
    orders_table.ingest()
    # Every lane has a record it has not looked at; each reads past what is not its own.
    assert len(cursors_claim(trigger_id=trigger.pk)) == 10


def test_it_deletes_invocations_past_retention_and_keeps_their_dead_letters(orders_table):
    from workers.retention import invocations_expire

    orders_table.put("a")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=0)
    run_until_idle(trigger)
    orders_table.put("b")
    orders_table.ingest()
    run_until_idle(trigger)
    old, recent = Invocation.objects.filter(trigger=trigger).order_by("id")
    Invocation.objects.filter(pk=old.pk).update(started_at=timezone.now() - timezone.timedelta(days=orders_table.retention_days, minutes=1))

    assert invocations_expire() == 1

    assert list(Invocation.objects.filter(trigger=trigger)) == [recent]
    letters = {letter.invocation_id for letter in DeadLetter.objects.filter(trigger=trigger)}
    assert letters == {None, recent.pk}

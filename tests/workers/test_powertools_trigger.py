"""A Powertools batch handler (tests/powertools_handler.py), unchanged from what one would
deploy to AWS Lambda, run as a Python trigger end to end: put_item on DynamoDB Local, the
readers save the records, and the runner sends them with ReportBatchItemFailures on.

Lambda's rule for partial batch responses on streams: the checkpoint is the lowest reported
sequence number; that record and every record after it are sent again, the ones before it never.
"""

import ast
import json
from datetime import datetime
from decimal import Decimal

import pytest
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamModel, DynamoDBStreamRecordModel

from streams.lambda_event import lambda_event
from streams.models import ChangeRecord
from streams.sources import source_add
from tests.support import handler_log
from tests.support.readers import read_until_idle
from tests.support.triggering import run_until_idle
from workers.models import DeadLetter, Invocation, Trigger, TriggerCursor

pytestmark = pytest.mark.django_db


def seen() -> list[dict]:
    """What reached the record handler, in order, as the handler noted it."""
    return [entry["record"] for entry in handler_log.notes() if "record" in entry]


@pytest.fixture
def orders(make_table, dynamodb):
    table = make_table(range_key=False, prefix="pt-orders")
    source = source_add(table_name=table, region="us-east-1")

    def put(pk, **attributes):
        item = {"pk": {"S": pk}, "total": {"N": "12.50"}, "tags": {"SS": ["a", "b"]},
                **{name: {"S": value} for name, value in attributes.items()}}
        dynamodb.put_item(TableName=table, Item=item)

    source.put = put
    source.ingest = lambda: read_until_idle(source_id=source.pk)
    return source


def powertools_trigger(source, **settings) -> Trigger:
    return Trigger.objects.create(
        name="orders-powertools", source=source, target=Trigger.Target.PYTHON,
        handler="tests.handlers.powertools.lambda_handler", report_batch_item_failures=True, **settings,
    )


def sent_keys(trigger) -> list[list[str]]:
    """The partition keys of each invocation's batch, in order."""
    batches = []
    for invocation in Invocation.objects.filter(trigger=trigger).order_by("id"):
        by_id = ChangeRecord.objects.in_bulk(invocation.record_ids)
        batches.append([by_id[pk].partition_key for pk in invocation.record_ids])
    return batches


def reported_failures(invocation) -> list[str]:
    return [entry["itemIdentifier"] for entry in json.loads(invocation.response_body)["batchItemFailures"]]


def test_it_parses_every_record_with_the_powertools_model(orders):
    orders.put("k0")
    orders.put("k1", note="x")
    orders.put("k0", note="changed")  # a MODIFY with both images
    orders.ingest()
    trigger = powertools_trigger(orders)

    run_until_idle(trigger)

    records = list(ChangeRecord.objects.filter(source=orders).select_related("source", "shard__stream").order_by("sequence_key"))
    # The exact event the handler was sent validates as Powertools' whole-event model...
    parsed = DynamoDBStreamModel.model_validate(lambda_event(records))
    assert len(parsed.Records) == 3
    # ...and every record reached the record handler as the model (a record that failed
    # validation would never reach it: Powertools reports it as a failure instead).
    handled = seen()
    assert [record["model"] for record in handled] == [DynamoDBStreamRecordModel.__name__] * 3
    assert [r["sequence_number"] for r in handled] == [r.sequence_number for r in records]
    assert [r["event_name"] for r in handled] == ["INSERT", "INSERT", "MODIFY"]
    modify = handled[2]
    # Powertools' model turns DynamoDB JSON into Python values, as it does on Lambda.
    assert modify["keys"] == {"pk": {"type": "str", "value": "k0"}}
    assert "note" not in modify["old_image"] and "total" in modify["old_image"]
    assert modify["new_image"]["note"] == {"type": "str", "value": "changed"}
    total, tags = modify["new_image"]["total"], modify["new_image"]["tags"]
    assert total["type"] == "Decimal" and Decimal(total["value"]) == Decimal("12.50")
    assert tags == {"type": "set", "value": ["a", "b"]}
    assert modify["created_type"] == datetime.__name__
    assert modify["event_source_arn"] == records[2].shard.stream.arn
    invocation = Invocation.objects.get(trigger=trigger)
    assert invocation.outcome == "success" and json.loads(invocation.response_body) == {"batchItemFailures": []}


def test_it_resends_from_the_lowest_failed_record_and_never_the_successes_before_it(orders):
    for number in range(6):
        orders.put(f"k{number}", **({"fail": "yes"} if number in (2, 4) else {}))
    orders.ingest()
    trigger = powertools_trigger(orders, maximum_retry_attempts=2)

    run_until_idle(trigger)

    retried = ["k2", "k3", "k4", "k5"]
    # MaximumRetryAttempts 2: the first invocation and two retries.
    assert sent_keys(trigger) == [["k0", "k1", "k2", "k3", "k4", "k5"], retried, retried]
    invocations = list(Invocation.objects.filter(trigger=trigger).order_by("id"))
    assert [i.outcome for i in invocations] == ["partial_failure"] * 3
    assert [i.attempt for i in invocations] == [0, 1, 2]
    by_key = {r.partition_key: r for r in ChangeRecord.objects.filter(source=orders)}
    for invocation in invocations:
        # Powertools reports exactly the marked records, by SequenceNumber.
        assert reported_failures(invocation) == [by_key["k2"].sequence_number, by_key["k4"].sequence_number]
    handled = [record["keys"]["pk"]["value"] for record in seen()]
    assert handled.count("k0") == handled.count("k1") == 1
    assert handled.count("k3") == handled.count("k5") == 3  # after the checkpoint: sent again, as on Lambda
    # Retries exhausted: the unsettled tail goes to the dead-letter list and the cursor moves on.
    letter = DeadLetter.objects.get(trigger=trigger)
    assert [ChangeRecord.objects.get(pk=pk).partition_key for pk in letter.record_ids] == retried
    cursor = TriggerCursor.objects.get(trigger=trigger)
    assert cursor.position == by_key["k5"].sequence_key and cursor.attempt == 0


def test_it_checkpoints_across_batches_and_sends_later_batches_once(orders):
    for number in range(5):
        orders.put(f"k{number}", **({"fail": "yes"} if number == 3 else {}))
    orders.ingest()
    trigger = powertools_trigger(orders, batch_size=2, maximum_retry_attempts=1)

    run_until_idle(trigger)

    # [k2, k3] fails at k3: the checkpoint is k2, so the retry reads from k3 (up to BatchSize);
    # k0..k2 are never sent again. With one retry allowed, [k3, k4] is then given up on.
    assert sent_keys(trigger) == [["k0", "k1"], ["k2", "k3"], ["k3", "k4"]]
    outcomes = list(Invocation.objects.filter(trigger=trigger).order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["success", "partial_failure", "partial_failure"]
    handled = [record["keys"]["pk"]["value"] for record in seen()]
    assert [handled.count(key) for key in ("k0", "k1", "k2", "k3", "k4")] == [1, 1, 1, 2, 1]
    letter = DeadLetter.objects.get(trigger=trigger)
    assert [ChangeRecord.objects.get(pk=pk).partition_key for pk in letter.record_ids] == ["k3", "k4"]


def test_it_fails_the_whole_batch_when_every_record_fails(orders):
    orders.put("f0", fail="yes")
    orders.put("f1", fail="yes")
    orders.ingest()
    trigger = powertools_trigger(orders, maximum_retry_attempts=1)

    run_until_idle(trigger)

    # Powertools raises BatchProcessingError when nothing succeeded: a function error, so
    # the whole batch is retried, then dead-lettered.
    assert sent_keys(trigger) == [["f0", "f1"], ["f0", "f1"]]
    invocations = list(Invocation.objects.filter(trigger=trigger).order_by("id"))
    assert {(i.outcome, i.error_type) for i in invocations} == {("function_error", "BatchProcessingError")}
    assert len(DeadLetter.objects.get(trigger=trigger).record_ids) == 2


def test_it_hands_records_with_empty_maps_and_lists_at_any_depth_to_the_record_handler(orders, dynamodb):
    # DynamoDB Local 3.x sends each empty map as a bare {} (awslabs/amazon-dynamodb-local-samples#37),
    # which Powertools' DynamoDBStreamRecordModel refuses: every such record used to come back
    # as a batch item failure. Shardwatch stores and sends them as AWS does, {"M": {}}.
    empty_map, empty_list = {"M": {}}, {"L": []}
    key = {"pk": {"S": "e1"}}
    dynamodb.put_item(TableName=orders.table_name, Item={
        **key,
        "m": empty_map,
        "l": empty_list,
        "mm": {"M": {"inner": empty_map, "list": empty_list}},
        "lm": {"L": [empty_map, empty_list, {"M": {"a": {"L": [empty_map]}}}]},
    })
    dynamodb.update_item(
        TableName=orders.table_name, Key=key, UpdateExpression="SET n = :e, mm.more = :e",
        ExpressionAttributeValues={":e": empty_map},
    )
    orders.put("k1")
    dynamodb.delete_item(TableName=orders.table_name, Key=key)
    orders.ingest()
    trigger = powertools_trigger(orders)

    run_until_idle(trigger)

    invocation = Invocation.objects.get(trigger=trigger)
    assert invocation.outcome == "success" and json.loads(invocation.response_body) == {"batchItemFailures": []}
    handled = seen()
    assert [record["event_name"] for record in handled] == ["INSERT", "MODIFY", "INSERT", "REMOVE"]
    insert, modify, _, remove = handled

    def made(side: dict) -> dict:
        """The Python values Powertools made of an image, read back from the handler's notes."""
        return {
            name: (noted["type"], ast.literal_eval(noted["value"]) if noted["type"] in ("dict", "list") else noted["value"])
            for name, noted in side.items()
        }

    assert made(insert["new_image"]) == {
        "pk": ("str", "e1"),
        "m": ("dict", {}),
        "l": ("list", []),
        "mm": ("dict", {"inner": {}, "list": []}),
        "lm": ("list", [{}, [], {"a": [{}]}]),
    }
    assert made(modify["old_image"]) == made(insert["new_image"])
    assert made(modify["new_image"])["n"] == ("dict", {})
    assert made(modify["new_image"])["mm"] == ("dict", {"inner": {}, "list": [], "more": {}})
    assert remove["old_image"] == modify["new_image"] and remove["new_image"] == {}
    assert not DeadLetter.objects.filter(trigger=trigger).exists()

"""How a trigger with ReportBatchItemFailures reads its function's response, for every shape the
response can take, end to end: records written to DynamoDB Local and saved by the readers, then
sent by the runner to a Python handler, a webhook on 127.0.0.1 and a Lambda function behind
moto's Lambda API. All three reach workers.responses.batch_item_failures through the one reading
of an answer in workers.targets, so each shape is read the same for all three.

Each shape names its source:
- RECORDED: a run against real AWS, from localstack's AWS-validated snapshots of
  tests/aws/services/lambda_/event_source_mapping/test_lambda_integration_dynamodbstreams.py
  (test_dynamodb_report_batch_item_success_scenarios / _failure_scenarios, recorded
  25-11-2025; the failure ones are in ../shared/conformance/events/
  localstack-aws-recorded__esm-batch-failure-*.json): the successes were invoked once, the
  failures four times with the whole batch (MaximumRetryAttempts 3).
- DOC: the Lambda developer guide, "Configuring partial batch response with DynamoDB and
  Lambda", Reporting syntax and Success and failure conditions.
- NO RECORD: neither says; the reading chosen is the one that loses no record (the whole batch
  is retried), as workers.responses.batch_item_failures explains.

SEQ0, SEQ1 and SEQ2 in a shape stand for the SequenceNumber of the batch's three records.
The function answers the shape once; asked again (the retry), it answers null.
"""

import json
import uuid
from dataclasses import dataclass

import boto3
import pytest

from streams.models import ChangeRecord
from streams.sources import source_add
from tests.support import handler_log
from tests.support.http_servers import QuietHandler, http_server
from tests.support.moto_aws import moto_api, moto_server
from tests.support.readers import read_until_idle
from tests.support.triggering import run_until_idle, trigger_for
from workers.models import DeadLetter, Invocation, Trigger, TriggerCursor
from workers.targets.webhook import webhook_secret_new

pytestmark = pytest.mark.django_db

SUCCESS, MALFORMED = "success", "malformed"

RECORDED = "RECORDED test_dynamodb_report_batch_item_{}_scenarios[{}]"
DOC = "DOC: {}"
NO_RECORD = "NO RECORD: {}"
INVALID_JSON = "Lambda's SQS rules (no stream rule or record): an invalid JSON response fails the batch"


@dataclass(frozen=True)
class Shape:
    id: str
    text: str
    expect: str | int  # SUCCESS, MALFORMED, or the index of the lowest failed record
    source: str


SHAPES = [
    # The response as a whole.
    Shape("null", "null", SUCCESS, RECORDED.format("success", "null_success") + "; DOC: a null EventResponse"),
    Shape("empty_list", "[]", SUCCESS, RECORDED.format("success", "empty_list_success")),
    Shape("empty_object", "{}", SUCCESS, RECORDED.format("success", "empty_dict_success") + "; DOC: an empty EventResponse"),
    Shape("list_of_a_failure", '[{"itemIdentifier": "SEQ1"}]', MALFORMED, NO_RECORD.format("only the empty list is recorded")),
    Shape("list_of_null", "[null]", MALFORMED, NO_RECORD.format("only the empty list is recorded")),
    Shape("string", '"OK"', MALFORMED, NO_RECORD.format("a string is not an EventResponse")),
    Shape("empty_string", '""', MALFORMED, NO_RECORD.format(
        "localstack's Kinesis empty_string_success renders `return ` (None), so \"\" was never sent to AWS")),
    Shape("string_of_json", json.dumps(json.dumps({"batchItemFailures": []})), MALFORMED,
          NO_RECORD.format("Lambda does not parse a returned string again")),
    Shape("zero", "0", MALFORMED, NO_RECORD.format("a number is not an EventResponse")),
    Shape("number", "1.5", MALFORMED, NO_RECORD.format("a number is not an EventResponse")),
    Shape("true", "true", MALFORMED, NO_RECORD.format("a boolean is not an EventResponse")),
    Shape("false", "false", MALFORMED, NO_RECORD.format("a boolean is not an EventResponse")),
    # An object, and its batchItemFailures.
    Shape("object_without_batch_item_failures", '{"statusCode": 200, "body": "done"}', SUCCESS,
          "a missing list is the null list: " + RECORDED.format("success", "empty_dict_success")
          + "; DOC: a null batchItemFailure list"),
    Shape("batch_item_failures_in_another_case", '{"BatchItemFailures": [{"ItemIdentifier": "SEQ1"}]}', SUCCESS,
          "keys are case-sensitive, so the list is missing, as for {}: "
          + RECORDED.format("success", "empty_dict_success")
          + "; awsdocs/aws-lambda-developer-guide#320: only the lower-case keys work on AWS"),
    Shape("batch_item_failures_null", '{"batchItemFailures": null}', SUCCESS,
          RECORDED.format("success", "null_batch_item_failure_success") + "; DOC: a null batchItemFailure list"),
    Shape("batch_item_failures_empty", '{"batchItemFailures": []}', SUCCESS,
          RECORDED.format("success", "empty_batch_item_failure_success") + "; DOC: an empty batchItemFailure list"),
    Shape("batch_item_failures_string", '{"batchItemFailures": "SEQ1"}', MALFORMED,
          NO_RECORD.format("DOC's syntax is a list")),
    Shape("batch_item_failures_empty_string", '{"batchItemFailures": ""}', MALFORMED,
          NO_RECORD.format("DOC's syntax is a list")),
    Shape("batch_item_failures_number", '{"batchItemFailures": 0}', MALFORMED, NO_RECORD.format("DOC's syntax is a list")),
    Shape("batch_item_failures_object", '{"batchItemFailures": {"itemIdentifier": "SEQ1"}}', MALFORMED,
          NO_RECORD.format("DOC's syntax is a list")),
    Shape("batch_item_failures_empty_object", '{"batchItemFailures": {}}', MALFORMED,
          NO_RECORD.format("DOC's syntax is a list")),
    Shape("batch_item_failures_true", '{"batchItemFailures": true}', MALFORMED, NO_RECORD.format("DOC's syntax is a list")),
    Shape("batch_item_failures_false", '{"batchItemFailures": false}', MALFORMED, NO_RECORD.format("DOC's syntax is a list")),
    # The entries of the list.
    Shape("entry_null", '{"batchItemFailures": [null]}', MALFORMED, NO_RECORD.format("DOC's entries are objects")),
    Shape("entry_string", '{"batchItemFailures": ["SEQ1"]}', MALFORMED, NO_RECORD.format("DOC's entries are objects")),
    Shape("entry_number", '{"batchItemFailures": [1]}', MALFORMED, NO_RECORD.format("DOC's entries are objects")),
    Shape("entry_list", '{"batchItemFailures": [["SEQ1"]]}', MALFORMED, NO_RECORD.format("DOC's entries are objects")),
    Shape("entry_true", '{"batchItemFailures": [true]}', MALFORMED, NO_RECORD.format("DOC's entries are objects")),
    Shape("entry_empty_object", '{"batchItemFailures": [{}]}', MALFORMED,
          DOC.format("an itemIdentifier with a bad key name (here none at all)")),
    Shape("entry_bad_key", '{"batchItemFailures": [{"foo": 123}]}', MALFORMED,
          RECORDED.format("failure", "invalid_key_foo_failure") + "; DOC: an itemIdentifier with a bad key name"),
    Shape("entry_bad_key_null", '{"batchItemFailures": [{"foo": null}]}', MALFORMED,
          RECORDED.format("failure", "invalid_key_foo_null_value_failure")),
    Shape("entry_key_in_another_case", '{"batchItemFailures": [{"ItemIdentifier": "SEQ1"}]}', MALFORMED,
          DOC.format("an itemIdentifier with a bad key name")),
    # itemIdentifier.
    Shape("identifier_null", '{"batchItemFailures": [{"itemIdentifier": null}]}', MALFORMED,
          RECORDED.format("failure", "null_item_identifier_failure") + "; DOC: a null itemIdentifier"),
    Shape("identifier_empty", '{"batchItemFailures": [{"itemIdentifier": ""}]}', MALFORMED,
          RECORDED.format("failure", "empty_string_item_identifier_failure") + "; DOC: an empty string itemIdentifier"),
    Shape("identifier_number", '{"batchItemFailures": [{"itemIdentifier": 123}]}', MALFORMED,
          RECORDED.format("failure", "item_identifier_not_present_failure")),
    Shape("identifier_number_equal_to_a_sequence_number", '{"batchItemFailures": [{"itemIdentifier": SEQ1}]}', MALFORMED,
          "a number is not a sequence number, whatever its digits: "
          + RECORDED.format("failure", "item_identifier_not_present_failure")),
    Shape("identifier_object", '{"batchItemFailures": [{"itemIdentifier": {"S": "SEQ1"}}]}', MALFORMED,
          NO_RECORD.format("DOC's itemIdentifier is a SequenceNumber string")),
    Shape("identifier_not_in_the_batch", '{"batchItemFailures": [{"itemIdentifier": "99999999999999999999999"}]}', MALFORMED,
          NO_RECORD.format("Lambda's SQS rules fail the batch on a message ID that doesn't exist")),
    Shape("identifier_with_spaces", '{"batchItemFailures": [{"itemIdentifier": " SEQ1 "}]}', MALFORMED,
          NO_RECORD.format("not a sequence number of the batch")),
    Shape("a_good_entry_then_an_empty_identifier", '{"batchItemFailures": [{"itemIdentifier": "SEQ1"}, {"itemIdentifier": ""}]}',
          MALFORMED, DOC.format("an empty string itemIdentifier fails the whole batch")),
    # Valid partial failures.
    Shape("one_failure", '{"batchItemFailures": [{"itemIdentifier": "SEQ1"}]}', 1, DOC.format("Reporting syntax")),
    Shape("first_record_failed", '{"batchItemFailures": [{"itemIdentifier": "SEQ0"}]}', 0, DOC.format("Reporting syntax")),
    Shape("failures_out_of_order", '{"batchItemFailures": [{"itemIdentifier": "SEQ2"}, {"itemIdentifier": "SEQ1"}]}', 1,
          DOC.format("Lambda uses the record with the lowest sequence number as the checkpoint")),
    Shape("duplicate_failures", '{"batchItemFailures": [{"itemIdentifier": "SEQ2"}, {"itemIdentifier": "SEQ2"}]}', 2,
          DOC.format("Lambda uses the record with the lowest sequence number as the checkpoint")),
    Shape("entry_with_other_keys", '{"batchItemFailures": [{"itemIdentifier": "SEQ1", "reason": "no stock"}]}', 1,
          NO_RECORD.format("other keys are ignored, as beside batchItemFailures")),
    Shape("object_with_state", '{"state": {"count": 2}, "batchItemFailures": [{"itemIdentifier": "SEQ2"}]}', 2,
          "Lambda's tumbling-window response carries state beside batchItemFailures "
          "(aws-lambda-dotnet dynamodb-timewindow-response.json)"),
    # Answers that are not JSON: a webhook's body, or a Lambda custom runtime's.
    Shape("no_body", "", SUCCESS, DOC.format("a null EventResponse: an empty answer carries none")),
    Shape("blank_body", " \r\n", SUCCESS, DOC.format("a null EventResponse: an empty answer carries none")),
    Shape("plain_text", "OK", MALFORMED, INVALID_JSON),
    Shape("html", "<html><body>Accepted</body></html>", MALFORMED, INVALID_JSON),
    Shape("truncated_json", '{"batchItemFailures": [', MALFORMED, INVALID_JSON),
    Shape("json_then_text", "{} done", MALFORMED, INVALID_JSON),
]


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# A Python handler's return value is always sent on as JSON.
PYTHON_SHAPES = [shape for shape in SHAPES if is_json(shape.text)]


def shape_params(shapes):
    return [pytest.param(shape, id=shape.id) for shape in shapes]


@pytest.fixture(scope="module")
def orders_stream(dynamodb_endpoint):
    """One table of DynamoDB Local for the module, with three items written: each test saves
    its stream's records afresh, as a source of its own."""
    dynamodb = boto3.client("dynamodb")
    table = f"responses-{uuid.uuid4().hex[:10]}"
    dynamodb.create_table(
        TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    for key in ("k0", "k1", "k2"):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": key}})
    return table


@pytest.fixture
def batch(orders_stream):
    """The three records, saved by the readers; the answer of a shape for their batch."""
    source = source_add(table_name=orders_stream, region="us-east-1")
    read_until_idle(source_id=source.pk)
    records = list(ChangeRecord.objects.filter(source=source).order_by("sequence_key"))
    assert [record.partition_key for record in records] == ["k0", "k1", "k2"]

    def answer(shape: Shape) -> str:
        text = shape.text
        for index, record in enumerate(records):
            text = text.replace(f"SEQ{index}", record.sequence_number)
        return text

    return source, records, answer


def assert_read_as(shape: Shape, trigger: Trigger, records: list) -> None:
    invocations = list(Invocation.objects.filter(trigger=trigger).order_by("id"))
    outcomes = [(invocation.outcome, invocation.error_type) for invocation in invocations]
    sent = [invocation.record_ids for invocation in invocations]
    ids = [record.pk for record in records]
    if shape.expect == SUCCESS:
        assert (outcomes, sent) == ([("success", "")], [ids])
    elif shape.expect == MALFORMED:
        # The whole batch failed, and went again: a malformed answer is not a partial failure.
        assert (outcomes, sent) == ([("function_error", "InvalidBatchItemFailures"), ("success", "")], [ids, ids])
        assert invocations[0].error_message.startswith("The batchItemFailures response is malformed: ")
    else:
        # Checkpointed before the lowest failure: it and the records after it went again.
        assert (outcomes, sent) == ([("partial_failure", ""), ("success", "")], [ids, ids[shape.expect:]])
    assert not DeadLetter.objects.filter(trigger=trigger).exists()
    assert TriggerCursor.objects.get(trigger=trigger).position == records[-1].sequence_key


RBIF = {"report_batch_item_failures": True, "maximum_retry_attempts": 1}


@pytest.mark.parametrize("shape", shape_params(PYTHON_SHAPES))
def test_it_reads_a_python_handlers_response(shape, batch):
    source, records, answer = batch
    handler_log.answer_set(answer(shape))
    trigger = trigger_for(source, "answer_once", **RBIF)

    run_until_idle(trigger)

    assert_read_as(shape, trigger, records)


class Webhook(QuietHandler):
    """Answers the first request with server.answer, and the ones after it with null."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = (self.server.answer if not self.server.answered else "null").encode()
        self.server.answered = True
        self.answer(200, body)


@pytest.fixture
def webhook():
    with http_server(Webhook, answered=False) as server:
        yield server


@pytest.mark.parametrize("shape", shape_params(SHAPES))
def test_it_reads_a_webhooks_response(shape, batch, webhook):
    source, records, answer = batch
    webhook.answer = answer(shape)
    _, encrypted = webhook_secret_new()
    trigger = Trigger.objects.create(
        name="orders-hook", source=source, target=Trigger.Target.WEBHOOK,
        webhook_url=f"http://127.0.0.1:{webhook.server_address[1]}/", webhook_secret_encrypted=encrypted, **RBIF,
    )

    run_until_idle(trigger)

    assert_read_as(shape, trigger, records)


@pytest.fixture(scope="module")
def moto_lambda():
    """moto's server (tests/support/moto_aws.py) for the module. There is no Docker here: moto's
    Docker-less Lambda backend answers an Invoke with the results queued through
    /moto-api/static/lambda-simple/response, as they are, then with the event it was sent."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.mark.parametrize("shape", shape_params(SHAPES))
def test_it_reads_a_lambda_functions_response(shape, batch, moto_lambda, monkeypatch):
    source, records, answer = batch
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", moto_lambda)
    moto_api(moto_lambda, "reset", {})  # nothing queued by an earlier test is left
    moto_api(moto_lambda, "config", {"lambda": {"use_docker": False}})
    moto_api(moto_lambda, "static/lambda-simple/response", {"results": [answer(shape)], "region": source.region})
    trigger = Trigger.objects.create(
        name="orders-fn", source=source, target=Trigger.Target.LAMBDA, function_name="orders-fn", **RBIF,
    )

    run_until_idle(trigger)

    # The retry is answered with its own event: an object without batchItemFailures, a success.
    assert_read_as(shape, trigger, records)


def test_it_ignores_the_response_without_report_batch_item_failures(batch):
    # DOC: "Lambda doesn't process these responses unless the ReportBatchItemFailures feature is
    # explicitly turned on for your event source mapping."
    source, records, answer = batch
    handler_log.answer_set(answer(Shape("identifier_empty", '{"batchItemFailures": [{"itemIdentifier": ""}]}', SUCCESS, "")))
    trigger = trigger_for(source, "answer_once", maximum_retry_attempts=1)

    run_until_idle(trigger)

    assert list(Invocation.objects.filter(trigger=trigger).values_list("outcome", flat=True)) == ["success"]
    assert TriggerCursor.objects.get(trigger=trigger).position == records[-1].sequence_key

"""On-failure destinations: when a trigger gives up on records, its SQS queue or SNS topic gets
Lambda's metadata-only message (DDBStreamBatchInfo) for the dead-letter row, and a destination
that cannot be reached never stops the trigger.

SQS, SNS, STS and Lambda are moto's server on 127.0.0.1, reached through boto3's standard
AWS_ENDPOINT_URL_<SERVICE> variables, as a deployment would point at them.

The messages are held to the ones AWS sent in localstack's AWS-validated runs
(../shared/conformance/events/localstack-aws-recorded__esm-*.json), member by member.
"""

import json
import logging
import re

import boto3
import pytest
from django.utils import timezone

from streams.models import ChangeRecord, StreamSource
from streams.sources import source_add
from tests.handlers import triggers as trigger_handlers
from tests.support import handler_log
from tests.support.dynamodb_local import free_port
from tests.support.moto_aws import moto_api, moto_server
from tests.support.readers import read_until_idle
from tests.support.triggering import run_until_idle
from workers import destinations
from workers.destinations import function_arn
from workers.models import DeadLetter, Invocation, Trigger, TriggerCursor
from workers.cursors import cursors_claim, cursors_ensure
from workers.runner import cursor_process

# The forms of the recorded timestamps: localstack's snapshot replaces each with an example of
# its form, "<timestamp:2022-07-13T13:48:01.000Z>" (timestamp) and
# "<timestamp:2022-07-13T13:48:01Z>" (approximateArrivalOfFirstRecord / ...OfLastRecord).
MILLISECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

pytestmark = pytest.mark.django_db


@pytest.fixture
def moto_endpoint(dynamodb_endpoint, monkeypatch):
    """moto's server (tests/support/moto_aws.py); the session's credentials and region
    (tests/dynamodb_local.environment) are what boto3 signs with."""
    with moto_server() as endpoint:
        for service in ("SQS", "SNS", "STS", "LAMBDA"):
            monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", endpoint)
        yield endpoint


@pytest.fixture
def orders(make_table, dynamodb):
    table = make_table(range_key=False, prefix="dest-orders")
    source = source_add(table_name=table, region="us-east-1")

    def put(pk):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": pk}})

    source.put = put
    source.ingest = lambda: read_until_idle(source_id=source.pk)
    return source


def failing_trigger(source, **destination) -> Trigger:
    return Trigger.objects.create(
        name="orders-fail", source=source, target=Trigger.Target.PYTHON, handler="tests.handlers.triggers.fail_always",
        maximum_retry_attempts=0, **destination,
    )


def queue_new(name: str) -> tuple[str, str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def queue_drain(url: str) -> list[str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    bodies = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        if not answer.get("Messages"):
            return bodies
        bodies.extend(message["Body"] for message in answer["Messages"])
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(answer["Messages"])]
        )


def run_and_commit(trigger, capture):
    # destination_notify runs in transaction.on_commit: run the callbacks as a commit would.
    with capture(execute=True):
        run_until_idle(trigger)


def assert_matches_dead_letter(message: dict, letter: DeadLetter, condition: str = "RetryAttemptsExhausted") -> None:
    from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamLambdaOnFailureDestinationModel

    # Powertools' model of what AWS sends to an on-failure destination accepts ours.
    DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(message)
    info = dict(message["DDBStreamBatchInfo"])
    times = dict(ChangeRecord.objects.filter(pk__in=letter.record_ids).values_list("pk", "approximate_creation_time"))
    first, last = info.pop("approximateArrivalOfFirstRecord"), info.pop("approximateArrivalOfLastRecord")
    assert SECONDS.match(first) and SECONDS.match(last)
    assert first == times[letter.record_ids[0]].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert last == times[letter.record_ids[-1]].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert MILLISECONDS.match(message["timestamp"])
    assert info == {
        "shardId": letter.shard.shard_id,
        "startSequenceNumber": letter.first_sequence_number,
        "endSequenceNumber": letter.last_sequence_number,
        "batchSize": len(letter.record_ids),
        "streamArn": letter.shard.stream.arn,
    }
    assert message["requestContext"]["condition"] == condition
    assert message["shardwatch"]["deadLetterId"] == letter.pk
    assert "Records" not in message  # metadata only, as Lambda sends: the records stay in Shardwatch


def test_it_sends_the_batch_info_to_the_sqs_queue(moto_endpoint, orders, django_capture_on_commit_callbacks):
    orders.put("a")
    orders.put("b")
    orders.ingest()
    url, _ = queue_new("orders-failures")
    trigger = failing_trigger(orders, on_failure_sqs_url=url)

    run_and_commit(trigger, django_capture_on_commit_callbacks)

    assert trigger_handlers.calls() == [["a", "b"]]  # MaximumRetryAttempts 0: no retry
    letter = DeadLetter.objects.select_related("shard__stream").get(trigger=trigger)
    [body] = queue_drain(url)
    message = json.loads(body)
    assert_matches_dead_letter(message, letter)
    records = ChangeRecord.objects.filter(source=orders).order_by("sequence_key")
    assert message["DDBStreamBatchInfo"]["startSequenceNumber"] == records.first().sequence_number
    assert message["DDBStreamBatchInfo"]["endSequenceNumber"] == records.last().sequence_number
    assert message["DDBStreamBatchInfo"]["batchSize"] == 2
    assert message["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert message["requestContext"]["approximateInvokeCount"] == 1


def test_it_publishes_the_batch_info_to_the_sns_topic(moto_endpoint, orders, django_capture_on_commit_callbacks):
    orders.put("a")
    orders.ingest()
    sns = boto3.client("sns", region_name="us-east-1")
    topic = sns.create_topic(Name="orders-failures")["TopicArn"]
    # A queue subscribed to the topic is how the test reads what was published.
    url, queue_arn = queue_new("orders-failures-from-topic")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    trigger = failing_trigger(orders, on_failure_sns_arn=topic)

    run_and_commit(trigger, django_capture_on_commit_callbacks)

    letter = DeadLetter.objects.select_related("shard__stream").get(trigger=trigger)
    [body] = queue_drain(url)
    envelope = json.loads(body)
    assert envelope["TopicArn"] == topic
    assert_matches_dead_letter(json.loads(envelope["Message"]), letter)


def test_it_sends_one_message_per_dead_letter(moto_endpoint, orders, django_capture_on_commit_callbacks):
    for key in ("a", "b", "c"):
        orders.put(key)
    orders.ingest()
    url, _ = queue_new("orders-failures-each")
    trigger = failing_trigger(orders, on_failure_sqs_url=url, batch_size=1)

    run_and_commit(trigger, django_capture_on_commit_callbacks)

    letters = {letter.pk: letter for letter in DeadLetter.objects.select_related("shard__stream").filter(trigger=trigger)}
    messages = [json.loads(body) for body in queue_drain(url)]
    assert len(letters) == len(messages) == 3
    for message in messages:
        assert_matches_dead_letter(message, letters[message["shardwatch"]["deadLetterId"]])


def test_it_keeps_going_when_the_destination_is_unreachable(orders, django_capture_on_commit_callbacks, monkeypatch, caplog):
    # Nothing listens on this port: every send is refused.
    nowhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", nowhere)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", nowhere)
    orders.put("a")
    orders.ingest()
    trigger = failing_trigger(
        orders, on_failure_sqs_url=f"{nowhere}/000000000000/gone",
        on_failure_sns_arn="arn:aws:sns:us-east-1:000000000000:gone",
    )

    with caplog.at_level(logging.WARNING, logger="workers.destinations"):
        run_and_commit(trigger, django_capture_on_commit_callbacks)

    letter = DeadLetter.objects.get(trigger=trigger)
    assert len(letter.record_ids) == 1
    cursor = TriggerCursor.objects.get(trigger=trigger)
    assert cursor.position == ChangeRecord.objects.get(source=orders).sequence_key and cursor.attempt == 0
    assert "on-failure destination of trigger orders-fail failed" in caplog.text
    # The trigger still runs: the next record goes out (and fails, and is dead-lettered, too).
    orders.put("b")
    orders.ingest()
    run_and_commit(trigger, django_capture_on_commit_callbacks)
    assert trigger_handlers.calls() == [["a"], ["b"]]
    assert DeadLetter.objects.filter(trigger=trigger).count() == 2


# localstack test_dynamodb_report_batch_item_failure_scenarios, recorded against AWS
# (localstack-aws-recorded__esm-batch-failure-<id>.json): one item, BatchSize 3,
# MaximumRetryAttempts 3, ReportBatchItemFailures. Each time, the item was sent 4 times and the
# SQS message said approximateInvokeCount 4; functionError was null for every response the
# function returned, and "Unhandled" only for the exception it raised.
RECORDED_FAILURES = [
    pytest.param('{"batchItemFailures": [{"itemIdentifier": 123}]}', None, id="item_identifier_not_present_failure"),
    pytest.param('{"batchItemFailures": [{"itemIdentifier": ""}]}', None, id="empty_string_item_identifier_failure"),
    pytest.param('{"batchItemFailures": [{"itemIdentifier": null}]}', None, id="null_item_identifier_failure"),
    pytest.param('{"batchItemFailures": [{"foo": 123}]}', None, id="invalid_key_foo_failure"),
    pytest.param('{"batchItemFailures": [{"foo": null}]}', None, id="invalid_key_foo_null_value_failure"),
    pytest.param(None, "Unhandled", id="unhandled_exception_in_function"),
]


@pytest.mark.parametrize("answer, function_error", RECORDED_FAILURES)
def test_it_sends_the_message_aws_recorded_after_retries_run_out(
    answer, function_error, moto_endpoint, orders, django_capture_on_commit_callbacks
):
    orders.put("hello world")
    orders.ingest()
    url, _ = queue_new("orders-failures-recorded")
    if answer is not None:
        handler_log.answer_set(answer)
    trigger = Trigger.objects.create(
        name="orders-recorded", source=orders, target=Trigger.Target.PYTHON,
        handler=f"tests.handlers.triggers.{'answer_always' if answer is not None else 'fail_always'}",
        batch_size=3, maximum_retry_attempts=3, report_batch_item_failures=True, on_failure_sqs_url=url,
    )

    run_and_commit(trigger, django_capture_on_commit_callbacks)

    assert trigger_handlers.calls() == [["hello world"]] * 4
    letter = DeadLetter.objects.select_related("shard__stream").get(trigger=trigger)
    [body] = queue_drain(url)
    message = json.loads(body)
    assert_matches_dead_letter(message, letter)
    assert list(message) == ["requestContext", "responseContext", "version", "timestamp", "DDBStreamBatchInfo", "shardwatch"]
    request = dict(message["requestContext"])
    assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", request.pop("requestId"))
    assert request == {
        "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:orders-recorded",
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 4,
    }
    assert message["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": function_error}
    assert message["version"] == "1.0"
    assert message["DDBStreamBatchInfo"]["batchSize"] == 1


def test_it_names_a_python_trigger_by_the_arn_its_handler_sees(moto_endpoint, orders, django_capture_on_commit_callbacks):
    orders.put("a")
    orders.ingest()
    url, _ = queue_new("orders-failures-arn")
    trigger = Trigger.objects.create(
        name="orders-arn", source=orders, target=Trigger.Target.PYTHON, handler="tests.handlers.triggers.fail_noting_arn",
        maximum_retry_attempts=0, on_failure_sqs_url=url,
    )

    run_and_commit(trigger, django_capture_on_commit_callbacks)

    [noted] = [entry["function_arn"] for entry in handler_log.notes() if "function_arn" in entry]
    [body] = queue_drain(url)
    assert json.loads(body)["requestContext"]["functionArn"] == noted


def lambda_trigger(function_name: str, region: str = "us-east-1") -> Trigger:
    return Trigger(source=StreamSource(table_name="orders", region=region), target=Trigger.Target.LAMBDA,
                   function_name=function_name)


def test_it_names_a_lambda_function_by_its_arn(moto_endpoint):
    # AWS's form (recorded): arn:<partition>:lambda:<region>:<account>:function:<name>. A name
    # without its account is in the caller's: moto's STS answers with its account 123456789012.
    assert function_arn(trigger=lambda_trigger("orders-fn")) == "arn:aws:lambda:us-east-1:123456789012:function:orders-fn"
    assert function_arn(trigger=lambda_trigger("orders-fn:live")) == (
        "arn:aws:lambda:us-east-1:123456789012:function:orders-fn:live"
    )
    assert function_arn(trigger=lambda_trigger("111122223333:function:orders-fn")) == (
        "arn:aws:lambda:us-east-1:111122223333:function:orders-fn"
    )
    full = "arn:aws:lambda:eu-west-1:444455556666:function:orders-fn:7"
    assert function_arn(trigger=lambda_trigger(full)) == full
    assert function_arn(trigger=lambda_trigger("orders-fn", region="cn-north-1")) == (
        "arn:aws-cn:lambda:cn-north-1:123456789012:function:orders-fn"
    )


def test_it_names_a_lambda_function_as_given_when_sts_cannot_answer(dynamodb_endpoint, monkeypatch, caplog):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{free_port()}")  # nothing listens there

    with caplog.at_level(logging.WARNING, logger="workers.destinations"):
        assert function_arn(trigger=lambda_trigger("orders-fn")) == "orders-fn"

    assert "STS GetCallerIdentity failed" in caplog.text


def test_it_asks_sts_again_only_after_a_pause_when_it_cannot_answer(dynamodb_endpoint, monkeypatch, caplog):
    # Each try waits out STS's timeouts inside the trigger runner: one a minute, not one a dead letter.
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="workers.destinations"):
        assert function_arn(trigger=lambda_trigger("orders-fn")) == "orders-fn"
        assert caplog.text.count("STS GetCallerIdentity failed") == 1

        assert function_arn(trigger=lambda_trigger("orders-fn")) == "orders-fn"
        assert caplog.text.count("STS GetCallerIdentity failed") == 1

        monkeypatch.setattr(destinations, "STS_RETRY_AFTER_S", 0.0)
        monkeypatch.setattr(destinations, "_accounts", {})
        function_arn(trigger=lambda_trigger("orders-fn"))
        function_arn(trigger=lambda_trigger("orders-fn"))
        assert caplog.text.count("STS GetCallerIdentity failed") == 3


def test_it_sends_the_message_of_a_lambda_trigger_whose_response_is_malformed(
    moto_endpoint, orders, django_capture_on_commit_callbacks
):
    # moto's Docker-less Lambda backend answers the Invoke with the result queued here.
    moto_api(moto_endpoint, "config", {"lambda": {"use_docker": False}})
    moto_api(moto_endpoint, "static/lambda-simple/response",
             {"results": ['{"batchItemFailures": [{"itemIdentifier": ""}]}'], "region": "us-east-1"})
    orders.put("a")
    orders.ingest()
    url, _ = queue_new("orders-failures-lambda")
    trigger = Trigger.objects.create(
        name="orders-lambda", source=orders, target=Trigger.Target.LAMBDA, function_name="orders-fn",
        report_batch_item_failures=True, maximum_retry_attempts=0, on_failure_sqs_url=url,
    )
    try:
        run_and_commit(trigger, django_capture_on_commit_callbacks)
    finally:
        # moto keeps its config in a module global of this process: put the default back.
        moto_api(moto_endpoint, "config", {"lambda": {"use_docker": True}})

    [invocation] = Invocation.objects.filter(trigger=trigger)
    assert (invocation.outcome, invocation.error_type) == ("function_error", "InvalidBatchItemFailures")
    [body] = queue_drain(url)
    message = json.loads(body)
    assert_matches_dead_letter(message, DeadLetter.objects.select_related("shard__stream").get(trigger=trigger))
    assert message["requestContext"]["functionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:orders-fn"
    assert message["requestContext"]["approximateInvokeCount"] == 1
    assert message["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": None}


def test_it_counts_the_invocations_made_before_the_records_aged_out(
    moto_endpoint, orders, django_capture_on_commit_callbacks
):
    orders.put("a")
    orders.ingest()
    url, _ = queue_new("orders-failures-aged")
    trigger = Trigger.objects.create(
        name="orders-aged", source=orders, target=Trigger.Target.PYTHON, handler="tests.handlers.triggers.fail_always",
        maximum_record_age_s=3600, on_failure_sqs_url=url,  # MaximumRetryAttempts -1: retried until too old
    )

    def step():
        cursors_ensure(trigger=trigger)
        TriggerCursor.objects.filter(trigger=trigger).update(next_attempt_at=None)
        for cursor_id, owner in cursors_claim(trigger_id=trigger.pk):
            cursor_process(cursor_id=cursor_id, owner=owner)
            TriggerCursor.objects.lease_release(cursor_id, owner=owner)

    step()
    step()
    ChangeRecord.objects.filter(source=orders).update(approximate_creation_time=timezone.now() - timezone.timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        step()

    assert trigger_handlers.calls() == [["a"], ["a"]]
    [body] = queue_drain(url)
    message = json.loads(body)
    assert_matches_dead_letter(message, DeadLetter.objects.select_related("shard__stream").get(trigger=trigger),
                               condition="RecordAgeExceeded")
    # No AWS record: the function was invoked twice with the record before it aged out.
    assert message["requestContext"]["approximateInvokeCount"] == 2
    assert message["responseContext"]["functionError"] is None

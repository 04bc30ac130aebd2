"""On-failure destinations: when a trigger gives up on records, its SQS queue or SNS topic gets
Lambda's metadata-only message (DDBStreamBatchInfo) for the dead-letter row, and a destination
that cannot be reached never stops the trigger.

SQS and SNS are moto's server on 127.0.0.1, reached through boto3's standard
AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL_SNS, as a deployment would point at them.
"""

import json
import logging

import boto3
import pytest

from streams.models import ChangeRecord
from streams.sources import source_add
from tests import trigger_handlers
from tests.dynamodb_local import free_port
from tests.readers import read_until_idle
from tests.triggering import run_until_idle
from workers.models import DeadLetter, Trigger, TriggerCursor

pytestmark = pytest.mark.django_db


@pytest.fixture
def moto_endpoint(dynamodb_endpoint, monkeypatch):
    """moto's server in a thread of this process; the session's credentials and region
    (tests/dynamodb_local.environment) are what boto3 signs with."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", endpoint)
    yield endpoint
    server.stop()


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
        name="orders-fail", source=source, target=Trigger.Target.PYTHON, handler="tests.trigger_handlers.fail_always",
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


def assert_matches_dead_letter(message: dict, letter: DeadLetter) -> None:
    from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamLambdaOnFailureDestinationModel

    # Powertools' model of what AWS sends to an on-failure destination accepts ours.
    DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(message)
    info = dict(message["DDBStreamBatchInfo"])
    assert info.pop("approximateArrivalOfFirstRecord").endswith("Z")
    assert info.pop("approximateArrivalOfLastRecord").endswith("Z")
    assert info == {
        "shardId": letter.shard.shard_id,
        "startSequenceNumber": letter.first_sequence_number,
        "endSequenceNumber": letter.last_sequence_number,
        "batchSize": len(letter.record_ids),
        "streamArn": letter.shard.stream.arn,
    }
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
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

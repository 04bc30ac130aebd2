"""Telling a trigger's SQS queue or SNS topic about records it gave up on.

As Lambda does for stream sources, the message carries where the records are, not the records
("DDBStreamBatchInfo"); the records themselves stay in Shardwatch's dead-letter list. A
destination that cannot be reached is logged and never blocks the trigger.

Each member is AWS's, in AWS's form, as AWS-recorded runs show it (localstack's AWS-validated
snapshots: ../shared/conformance/events/localstack-aws-recorded__esm-onfailure-sqs-message.json,
-onfailure-sns-message.json, -report-batch-item-failures.json and -batch-failure-*.json). One
member is Shardwatch's own: "shardwatch" names the dead-letter entry that holds the records.
"""

import json
import logging
import os
import threading
import time
import uuid
from datetime import UTC

import boto3
import botocore.config
import botocore.exceptions

from streams.models import ChangeRecord
from workers.handler_host import function_arn as handler_function_arn
from workers.models import DeadLetter, Outcome, Trigger
from workers.responses import INVALID_RESPONSE

log = logging.getLogger(__name__)


def _iso_ms(moment) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_s(moment) -> str:
    # ApproximateCreationDateTime is "rounded down to the closest second" (DynamoDB Streams API).
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def failure_message(letter: DeadLetter) -> dict:
    """Lambda's on-failure record for a stream source, as AWS sends it to SQS and SNS.

    Where each member's value comes from (AWS-recorded unless said otherwise):
    - requestContext.functionArn: the function's ARN (function_arn).
    - condition: RetryAttemptsExhausted; RecordAgeExceeded for records older than
      MaximumRecordAgeInSeconds (Lambda's documented condition).
    - approximateInvokeCount: how often the records given up on were sent: 4 after
      MaximumRetryAttempts 3. For records that aged out, the invocations before they did
      (no record: the function was invoked that often, whatever ended it).
    - responseContext.functionError: "Unhandled" when the last invocation failed (an exception,
      a timeout); null when the function returned normally, with a partial failure or with a
      response ReportBatchItemFailures cannot read (recorded for all five malformed ones).
    - timestamp: when the records were given up on, to the millisecond.
    - DDBStreamBatchInfo.approximateArrivalOfFirstRecord / ...OfLastRecord: the
      ApproximateCreationDateTime of the first and last record, to the second.
    """
    trigger = letter.trigger
    shard = letter.shard
    invocation = letter.invocation
    created = dict(
        ChangeRecord.objects.filter(pk__in=letter.record_ids).values_list("pk", "approximate_creation_time")
    )
    times = [created[pk] for pk in letter.record_ids if pk in created]
    discarded = invocation is not None and invocation.outcome == Outcome.DISCARDED
    returned = invocation is not None and (
        invocation.outcome == Outcome.PARTIAL_FAILURE or invocation.error_type == INVALID_RESPONSE
    )
    if invocation is None:
        invoked = 1
    else:
        # A discard's own invocation never reached the function; its attempt counts those that did.
        invoked = invocation.attempt if discarded else invocation.attempt + 1
    return {
        "requestContext": {
            "requestId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"shardwatch:dead-letter:{letter.pk}")),
            "functionArn": function_arn(trigger=trigger),
            "condition": "RecordAgeExceeded" if discarded else "RetryAttemptsExhausted",
            "approximateInvokeCount": invoked,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": None if (returned or discarded) else "Unhandled",
        },
        "version": "1.0",
        "timestamp": _iso_ms(letter.created_at),
        "DDBStreamBatchInfo": {
            "shardId": shard.shard_id if shard else "",
            "startSequenceNumber": letter.first_sequence_number,
            "endSequenceNumber": letter.last_sequence_number,
            "approximateArrivalOfFirstRecord": _iso_s(times[0]) if times else None,
            "approximateArrivalOfLastRecord": _iso_s(times[-1]) if times else None,
            "batchSize": len(letter.record_ids),
            "streamArn": shard.stream.arn if shard else trigger.source.stream_arn,
        },
        "shardwatch": {"trigger": trigger.name, "deadLetterId": letter.pk, "reason": letter.reason},
    }


def function_arn(*, trigger: Trigger) -> str:
    """The trigger's function as AWS names it in requestContext.functionArn:
    arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>].

    A Lambda target given by full ARN keeps it. One given without its account (a name,
    "name:qualifier") lives in the caller's account, which STS GetCallerIdentity gives without
    any IAM permission; when STS cannot answer, the name is given as it is. A partial ARN
    ("<account>:function:<name>") carries its account. A Python handler or a webhook is named
    as its handler's context names it (handler_host.function_arn)."""
    region = trigger.source.region or "us-east-1"
    if trigger.target != Trigger.Target.LAMBDA:
        return handler_function_arn(name=trigger.name, region=region)
    name = trigger.function_name
    if name.startswith("arn:"):
        return name
    parts = name.split(":")
    if len(parts) >= 3 and parts[1] == "function":
        account, name = parts[0], ":".join(parts[2:])
    else:
        account = _caller_account(region)
        if account is None:
            return name
    try:
        partition = boto3.session.Session().get_partition_for_region(region)
    except botocore.exceptions.UnknownRegionError:
        partition = "aws"
    return f"arn:{partition}:lambda:{region}:{account}:function:{name}"


# A failed look-up is asked again only after this long. Each try can take STS's timeouts
# (seconds), and it runs in the trigger runner: without the pause, every dead letter of a
# trigger would wait them out while STS is unreachable.
STS_RETRY_AFTER_S = 60.0
# (region, endpoints) -> (account, None) once known, or (None, monotonic time to ask again).
_accounts: dict = {}
_accounts_lock = threading.Lock()


def _caller_account(region: str) -> str | None:
    # Asked once per endpoint: the account of the credentials in use does not change.
    key = (region, os.environ.get("AWS_ENDPOINT_URL_STS"), os.environ.get("AWS_ENDPOINT_URL"))
    with _accounts_lock:
        account, retry_at = _accounts.get(key, (None, None))
    if account is not None:
        return account
    if retry_at is not None and time.monotonic() < retry_at:
        return None
    config = botocore.config.Config(
        connect_timeout=5, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2}
    )
    try:
        account = boto3.client("sts", region_name=region, config=config).get_caller_identity()["Account"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        log.warning("STS GetCallerIdentity failed, so on-failure messages name the function without its ARN: %s", exc)
        with _accounts_lock:
            _accounts[key] = (None, time.monotonic() + STS_RETRY_AFTER_S)
        return None
    with _accounts_lock:
        _accounts[key] = (account, None)
    return account


def destination_notify(*, letter_id: int) -> None:
    """Send the dead letter's failure_message to the trigger's SQS queue and SNS topic, if it
    has them. Never raises for AWS: a failure is logged, the records stay in the list."""
    letter = DeadLetter.objects.select_related("trigger__source", "shard__stream", "invocation").get(pk=letter_id)
    trigger = letter.trigger
    if not (trigger.on_failure_sqs_url or trigger.on_failure_sns_arn):
        return
    body = json.dumps(failure_message(letter))
    region = trigger.source.region
    try:
        if trigger.on_failure_sqs_url:
            boto3.client("sqs", region_name=region).send_message(QueueUrl=trigger.on_failure_sqs_url, MessageBody=body)
        if trigger.on_failure_sns_arn:
            boto3.client("sns", region_name=region).publish(TopicArn=trigger.on_failure_sns_arn, Message=body)
    except Exception as exc:  # noqa: BLE001 - the dead-letter list already holds the records
        log.warning("on-failure destination of trigger %s failed: %s: %s", trigger.name, type(exc).__name__, exc)

"""Telling a trigger's SQS queue or SNS topic about records it gave up on.

As Lambda does for stream sources, the message carries where the records are, not the records
("DDBStreamBatchInfo"); the records themselves stay in Shardwatch's dead-letter list. A
destination that cannot be reached is logged and never blocks the trigger.
"""

import json
import logging
import uuid
from datetime import UTC

import boto3

from streams.models import ChangeRecord
from workers.models import DeadLetter, Invocation

log = logging.getLogger(__name__)


def _iso(moment) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def failure_message(letter: DeadLetter) -> dict:
    """Lambda's on-failure record for a stream source (as AWS sends it to SQS and SNS)."""
    trigger = letter.trigger
    shard = letter.shard
    invocation = letter.invocation
    times = list(
        ChangeRecord.objects.filter(pk__in=letter.record_ids).values_list("approximate_creation_time", flat=True)
    )
    discarded = invocation is not None and invocation.outcome == Invocation.Outcome.DISCARDED
    partial = invocation is not None and invocation.outcome == Invocation.Outcome.PARTIAL_FAILURE
    return {
        "requestContext": {
            "requestId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"shardwatch:dead-letter:{letter.pk}")),
            "functionArn": trigger.function_name or f"shardwatch:trigger:{trigger.name}",
            "condition": "RecordAgeExceeded" if discarded else "RetryAttemptsExhausted",
            "approximateInvokeCount": 0 if discarded else (invocation.attempt + 1 if invocation else 1),
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            # AWS reports null after partial-failure retries run out, "Unhandled" after errors.
            "functionError": None if (partial or discarded) else "Unhandled",
        },
        "version": "1.0",
        "timestamp": _iso(letter.created_at),
        "DDBStreamBatchInfo": {
            "shardId": shard.shard_id if shard else "",
            "startSequenceNumber": letter.first_sequence_number,
            "endSequenceNumber": letter.last_sequence_number,
            "approximateArrivalOfFirstRecord": _iso(min(times)) if times else None,
            "approximateArrivalOfLastRecord": _iso(max(times)) if times else None,
            "batchSize": len(letter.record_ids),
            "streamArn": shard.stream.arn if shard else trigger.source.stream_arn,
        },
        "shardwatch": {"trigger": trigger.name, "deadLetterId": letter.pk, "reason": letter.reason},
    }


def destination_notify(*, letter_id: int) -> None:
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

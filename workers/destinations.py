"""Telling a trigger's SQS queue or SNS topic about records it gave up on.

As Lambda does for stream sources, the message carries where the records are, not the records
("DDBStreamBatchInfo"); the records themselves stay in Shardwatch's dead-letter list. A
destination that cannot be reached is logged and never blocks the trigger.
"""

import json
import logging

import boto3

from workers.models import DeadLetter

log = logging.getLogger(__name__)


def failure_message(letter: DeadLetter) -> dict:
    trigger = letter.trigger
    shard = letter.shard
    return {
        "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": trigger.function_name or trigger.name},
        "responseContext": {"functionError": letter.invocation.error_type if letter.invocation else ""},
        "version": "1.0",
        "timestamp": letter.created_at.isoformat(),
        "DDBStreamBatchInfo": {
            "shardId": shard.shard_id if shard else "",
            "startSequenceNumber": letter.first_sequence_number,
            "endSequenceNumber": letter.last_sequence_number,
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

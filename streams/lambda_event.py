"""Stored change records as the event AWS Lambda receives from a DynamoDB stream.

The shape follows Lambda's DynamoDB event (see the Lambda developer guide, "Using AWS Lambda
with Amazon DynamoDB"): typed attribute values exactly as the stream gave them, epoch seconds
for ApproximateCreationDateTime, and userIdentity spelt in lower camel case as Lambda does.
"""

from streams.models import ChangeRecord


def lambda_record(record: ChangeRecord) -> dict:
    """One element of the event's Records list. Needs record.source and record.shard.stream."""
    data = {
        "ApproximateCreationDateTime": int(record.approximate_creation_time.timestamp()),
        "Keys": record.keys,
        "SequenceNumber": record.sequence_number,
        "SizeBytes": record.size_bytes,
        "StreamViewType": record.view_type,
    }
    if record.new_image is not None:
        data["NewImage"] = record.new_image
    if record.old_image is not None:
        data["OldImage"] = record.old_image
    event = {
        "eventID": record.event_id,
        "eventName": record.event_name,
        "eventVersion": record.event_version or "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": record.source.region,
        "dynamodb": data,
        "eventSourceARN": record.shard.stream.arn,
    }
    if record.user_identity:
        event["userIdentity"] = {
            "type": record.user_identity.get("Type", record.user_identity.get("type")),
            "principalId": record.user_identity.get("PrincipalId", record.user_identity.get("principalId")),
        }
    return event


def lambda_event(records: list[ChangeRecord]) -> dict:
    """The exact {"Records": [...]} a Lambda function would be invoked with."""
    return {"Records": [lambda_record(record) for record in records]}

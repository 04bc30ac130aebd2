"""A DynamoDB stream handler written exactly as one would for AWS Lambda with Powertools'
batch utility and its Pydantic model, run unchanged by a Shardwatch Python trigger
(tests/workers/test_powertools_trigger.py). A record fails when its new image has a `fail` attribute.

The handler runs in its own process (workers/handler_host.py), so it tells the tests what
reached the record handler, and as what, through tests/handler_log.py.
"""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from tests.support import handler_log

processor = BatchProcessor(event_type=EventType.DynamoDBStreams, model=DynamoDBStreamRecordModel)



def _value(value) -> dict:
    # The Python value Powertools made of a DynamoDB attribute, with its type, as JSON can carry it.
    return {"type": type(value).__name__, "value": sorted(value) if isinstance(value, set) else str(value)}


def _seen(record: DynamoDBStreamRecordModel) -> None:
    handler_log.note({"record": {
        "model": type(record).__name__,
        "sequence_number": record.dynamodb.SequenceNumber,
        "event_name": record.eventName,
        "keys": {name: _value(value) for name, value in (record.dynamodb.Keys or {}).items()},
        "old_image": {name: _value(value) for name, value in (record.dynamodb.OldImage or {}).items()},
        "new_image": {name: _value(value) for name, value in (record.dynamodb.NewImage or {}).items()},
        "created_type": type(record.dynamodb.ApproximateCreationDateTime).__name__,
        "event_source_arn": record.eventSourceARN,
    }})


class RecordRejected(Exception):
    pass


def record_handler(record: DynamoDBStreamRecordModel) -> None:
    _seen(record)
    if "fail" in (record.dynamodb.NewImage or {}):
        raise RecordRejected(f"record {record.dynamodb.SequenceNumber} is marked to fail")


def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)

"""A DynamoDB stream handler written exactly as one would for AWS Lambda with Powertools'
batch utility and its Pydantic model, run unchanged by a Shardwatch Python trigger
(tests/test_powertools_trigger.py). A record fails when its new image has a `fail` attribute.

SEEN is the tests' window into the handler: which records reached the record handler, parsed.
"""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

processor = BatchProcessor(event_type=EventType.DynamoDBStreams, model=DynamoDBStreamRecordModel)

SEEN: list[DynamoDBStreamRecordModel] = []


class RecordRejected(Exception):
    pass


def record_handler(record: DynamoDBStreamRecordModel) -> None:
    SEEN.append(record)
    if "fail" in (record.dynamodb.NewImage or {}):
        raise RecordRejected(f"record {record.dynamodb.SequenceNumber} is marked to fail")


def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)

"""The Lambda event of stored records: the bytes a trigger runner builds from the database's
text and times equal what the pages and the API build from the model, to the byte."""

from datetime import UTC, datetime

import orjson
import pytest

from streams.lambda_event import event_json, event_rows, lambda_event, record_event_json
from streams.models import ChangeRecord

pytestmark = pytest.mark.django_db


def test_it_builds_the_same_event_from_the_database_text_as_from_the_model(orders_table):
    orders_table.put("a", status="new")
    orders_table.put("a", status="paid", note="ünïcode ✓ \"quoted\"")
    orders_table.ingest()
    first, second = ChangeRecord.objects.filter(source=orders_table).order_by("sequence_key")
    # A whole second, and one a microsecond before the next: both must keep their second.
    ChangeRecord.objects.filter(pk=first.pk).update(approximate_creation_time=datetime(2026, 11, 26, 22, 0, 5, tzinfo=UTC))
    ChangeRecord.objects.filter(pk=second.pk).update(
        approximate_creation_time=datetime(2026, 11, 26, 22, 0, 5, 999999, tzinfo=UTC)
    )
    records = list(ChangeRecord.objects.filter(source=orders_table).select_related("source", "shard__stream").order_by("sequence_key"))
    stream_arn = records[0].shard.stream.arn

    from_rows = [
        event_json(row, region="us-east-1", stream_arn=stream_arn)
        for row in event_rows(ChangeRecord.objects.filter(source=orders_table).order_by("sequence_key"))
    ]

    assert [orjson.loads(data) for data in from_rows] == [orjson.loads(record_event_json(r)) for r in records]
    event = lambda_event(records)
    assert [r["dynamodb"]["ApproximateCreationDateTime"] for r in event["Records"]] == [1795730405, 1795730405]
    assert event["Records"][1]["dynamodb"]["NewImage"]["note"] == {"S": "ünïcode ✓ \"quoted\""}
    assert event["Records"][1]["dynamodb"]["OldImage"]["status"] == {"S": "new"}
    assert list(event["Records"][0]) == [
        "eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb", "eventSourceARN",
    ]

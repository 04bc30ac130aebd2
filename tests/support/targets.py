"""What the target tests share: a Lambda event of two records, and an unsaved trigger."""

from streams.models import StreamSource
from workers.models import Trigger

EVENT = {
    "Records": [
        {
            "eventID": "c4ca4238a0b923820dcc509a6f75849b",
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1795000000,
                "Keys": {"pk": {"S": "order#1"}},
                "NewImage": {"pk": {"S": "order#1"}, "total": {"N": "12.50"}},
                "SequenceNumber": "111",
                "SizeBytes": 40,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-26T00:00:00.000",
        },
        {
            "eventID": "c81e728d9d4c2f636f067f89cc14862c",
            "eventName": "MODIFY",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1795000001,
                "Keys": {"pk": {"S": "order#2"}},
                "NewImage": {"pk": {"S": "order#2"}, "total": {"N": "3"}},
                "SequenceNumber": "222",
                "SizeBytes": 38,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-26T00:00:00.000",
        },
    ]
}


def make_trigger(**fields) -> Trigger:
    """An unsaved trigger on an unsaved source in eu-west-1: targets need no database."""
    fields.setdefault("name", "orders-audit")
    fields.setdefault("timeout_s", 3)
    return Trigger(source=StreamSource(table_name="orders", region="eu-west-1"), **fields)

"""A small fake of the DynamoDB Streams API, for what DynamoDB Local cannot show: it always
has exactly one shard per stream, so paging past 100 shards, shard lineage and AWS's
rarer errors are played by this fake instead. Everything else runs against DynamoDB Local.

It returns what Shardwatch's streams client returns (records as the service sends them, see
streams.aws) and raises real botocore ClientErrors with AWS's error codes.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import ClientError

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/fake/stream/2026-01-01T00:00:00.000"


def aws_error(code: str, operation: str, message: str = "fake") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def stream_record(*, sequence_number: str, pk: str, event_name: str = "INSERT", new=None, old=None) -> dict:
    data = {
        "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC).timestamp(),
        "Keys": {"pk": {"S": pk}},
        "SequenceNumber": sequence_number,
        "SizeBytes": 42,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        data["NewImage"] = {"pk": {"S": pk}, **new}
    if old is not None:
        data["OldImage"] = {"pk": {"S": pk}, **old}
    return {
        "eventID": f"event-{sequence_number}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": data,
    }


@dataclass
class FakeShard:
    shard_id: str
    parent: str = ""
    records: list = field(default_factory=list)
    closed: bool = False


class FakeStreams:
    def __init__(self, shards: list[FakeShard], *, page_size: int = 100):
        self.shards = {shard.shard_id: shard for shard in shards}
        self.page_size = page_size
        self.calls: list[tuple[str, dict]] = []
        # Errors to raise, by operation name, first in first out.
        self.errors: dict[str, list[ClientError]] = {}

    def _maybe_fail(self, operation):
        queue = self.errors.get(operation)
        if queue:
            raise queue.pop(0)

    def describe_stream(self, *, StreamArn, ExclusiveStartShardId=None, Limit=None):
        self.calls.append(("DescribeStream", {"ExclusiveStartShardId": ExclusiveStartShardId}))
        self._maybe_fail("DescribeStream")
        ids = list(self.shards)
        start = ids.index(ExclusiveStartShardId) + 1 if ExclusiveStartShardId else 0
        page = ids[start : start + self.page_size]
        shards = []
        for shard_id in page:
            shard = self.shards[shard_id]
            numbers = [r["dynamodb"]["SequenceNumber"] for r in shard.records] or ["1"]
            described = {"ShardId": shard_id, "SequenceNumberRange": {"StartingSequenceNumber": numbers[0]}}
            if shard.closed:
                described["SequenceNumberRange"]["EndingSequenceNumber"] = numbers[-1]
            if shard.parent:
                described["ParentShardId"] = shard.parent
            shards.append(described)
        description = {"StreamArn": StreamArn, "StreamStatus": "ENABLED", "Shards": shards}
        if start + self.page_size < len(ids):
            description["LastEvaluatedShardId"] = page[-1]
        return {"StreamDescription": description}

    def get_shard_iterator(self, *, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        self.calls.append(("GetShardIterator", {"ShardId": ShardId, "Type": ShardIteratorType, "SequenceNumber": SequenceNumber}))
        self._maybe_fail("GetShardIterator")
        records = self.shards[ShardId].records
        if ShardIteratorType == "TRIM_HORIZON":
            position = 0
        elif ShardIteratorType == "LATEST":
            position = len(records)
        else:
            position = next(
                (i + 1 for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == SequenceNumber), 0
            )
        return {"ShardIterator": f"{ShardId}|{position}"}

    def get_records(self, *, ShardIterator, Limit=1000):
        self.calls.append(("GetRecords", {"ShardIterator": ShardIterator}))
        self._maybe_fail("GetRecords")
        shard_id, position = ShardIterator.rsplit("|", 1)
        shard = self.shards[shard_id]
        position = int(position)
        batch = shard.records[position : position + Limit]
        end = position + len(batch)
        response = {"Records": batch}
        if not (shard.closed and end >= len(shard.records)):
            response["NextShardIterator"] = f"{shard_id}|{end}"
        return response

    def operations(self, name: str) -> list[dict]:
        return [params for operation, params in self.calls if operation == name]

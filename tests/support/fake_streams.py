"""A small fake of the DynamoDB Streams API, for what DynamoDB Local cannot show: it always
has exactly one shard per stream, so paging past 100 shards, shard lineage and AWS's
rarer errors are played by this fake instead. Everything else runs against DynamoDB Local.

It returns what Shardwatch's streams client returns (records as the service sends them, see
streams.aws) and raises real botocore ClientErrors with AWS's error codes.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import ClientError

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/fake/stream/2026-01-01T00:00:00.000"
TRIMMED_MESSAGE = "The operation attempted to read past the oldest stream record in a shard."


def aws_error(code: str, operation: str, message: str = "fake") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def stream_record(
    *, sequence_number: str, pk: str, event_name: str = "INSERT", new=None, old=None, written_at: datetime | None = None
) -> dict:
    data = {
        # Epoch seconds, rounded down to the second as AWS sends it (API_streams_StreamRecord).
        "ApproximateCreationDateTime": float(int((written_at or datetime(2026, 1, 1, tzinfo=UTC)).timestamp())),
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
    # How many of the oldest records retention has removed. They stay in `records`, so that
    # positions in iterators keep their meaning, and reading them fails as AWS fails.
    trimmed: int = 0

    def trim(self, count: int) -> None:
        """Retention removes the `count` oldest records still in the shard."""
        self.trimmed = min(len(self.records), self.trimmed + count)


class FakeStreams:
    def __init__(self, shards: list[FakeShard], *, page_size: int = 100):
        self.shards = {shard.shard_id: shard for shard in shards}
        self.page_size = page_size
        self.calls: list[tuple[str, dict]] = []
        # Errors to raise, by operation name, first in first out.
        self.errors: dict[str, list[ClientError]] = {}
        # What happens in the service just before an operation runs, by operation name, first
        # in first out: retention trimming a shard between GetShardIterator and GetRecords.
        self.before: dict[str, list[Callable[[], None]]] = {}

    def _maybe_fail(self, operation):
        events = self.before.get(operation)
        if events:
            events.pop(0)()
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
        shard = self.shards[ShardId]
        records = shard.records
        if ShardIteratorType == "TRIM_HORIZON":
            position = shard.trimmed
        elif ShardIteratorType == "LATEST":
            position = len(records)
        else:
            found = next((i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == SequenceNumber), None)
            # "You request a shard iterator with a sequence number older than the trim point"
            # (API reference, DynamoDB Streams, TrimmedDataAccessException).
            if found is not None and found < shard.trimmed:
                raise aws_error("TrimmedDataAccessException", "GetShardIterator", TRIMMED_MESSAGE)
            position = 0 if found is None else found + (ShardIteratorType == "AFTER_SEQUENCE_NUMBER")
        return {"ShardIterator": f"{ShardId}|{position}"}

    def get_records(self, *, ShardIterator, Limit=1000):
        self.calls.append(("GetRecords", {"ShardIterator": ShardIterator}))
        self._maybe_fail("GetRecords")
        shard_id, position = ShardIterator.rsplit("|", 1)
        shard = self.shards[shard_id]
        position = int(position)
        # "You obtain a shard iterator, but before you use the iterator in a GetRecords request,
        # a stream record in the shard exceeds the 24 hour period and is trimmed."
        if position < shard.trimmed:
            raise aws_error("TrimmedDataAccessException", "GetRecords", TRIMMED_MESSAGE)
        batch = shard.records[position : position + Limit]
        end = position + len(batch)
        response = {"Records": batch}
        if not (shard.closed and end >= len(shard.records)):
            response["NextShardIterator"] = f"{shard_id}|{end}"
        return response

    def operations(self, name: str) -> list[dict]:
        return [params for operation, params in self.calls if operation == name]

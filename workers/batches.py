"""Batches: the records a runner sends in one invocation, read ahead from what Shardwatch saved.

Triggers read the change records Shardwatch already saved, never the stream itself, so any
number of them costs DynamoDB nothing and a replay reaches back past the stream's 24 hours.

What must stay true:
- A batch is one lane's next records after the cursor, in sequence order: at most BatchSize
  records and MAX_PAYLOAD_BYTES of event, none after a bisected batch's end.
- Records that match none of the trigger's filter patterns are left out of the batch, and
  the cursor moves past them as past the records sent (Lambda's event filtering).
- What is read ahead stays right while the lease is held: records never change once saved,
  and a shard's records are saved in sequence order (see ReadAhead).
"""

import functools
from dataclasses import dataclass

import orjson

from streams.filters import compile_pattern
from streams.lambda_event import event_json, event_payload, event_rows
from streams.models import ChangeRecord
from workers.cursors import lane_of
from workers.models import MAX_PAYLOAD_BYTES

# A runner reads ahead at most this many records, and this many bytes of their SizeBytes.
READ_AHEAD_ROWS = 1000
READ_AHEAD_BYTES = 4 * 1024 * 1024


@functools.lru_cache(maxsize=256)
def patterns_compile(texts: tuple[str, ...]) -> tuple:
    """A trigger's filter patterns, compiled once per process, not per batch. The texts are
    the cache key, so an edited trigger gets its new patterns at once."""
    return tuple(compile_pattern(text) for text in texts)


@dataclass(slots=True)
class BatchRecord:
    """What a runner keeps of a record it reads: enough to order, checkpoint and send it."""

    pk: int
    sequence_key: str
    sequence_number: str
    received_epoch: float  # received_at, in Unix seconds
    created_epoch: float  # ApproximateCreationDateTime, in Unix seconds
    json: bytes  # the record's element of the Lambda event


@dataclass
class Batch:
    """What one invocation sends, and what the cursor passes when it is settled."""

    records: list[BatchRecord]
    filtered: list[BatchRecord]
    # Where the cursor may move when the batch is settled: past the last record read,
    # including filtered-out records and other lanes' records after the last one sent.
    through: str

    def payload(self) -> bytes:
        return event_payload([record.json for record in self.records])


class ReadAhead:
    """One lane's next records of a shard, read a few batches at a time and kept while the
    runner holds the cursor: a backlog then costs one query per many batches, not two per batch.

    Stays true: `records` holds every record of this lane after the cursor's position up to
    `through`, in sequence order. Records never change once saved, and a shard's records are
    saved in sequence order, so what was read stays right while the lease is held.
    """

    def __init__(self, *, shard_id: int, lane: int, lanes: int, region: str, stream_arn: str):
        self.shard_id, self.lane, self.lanes = shard_id, lane, lanes
        self.region, self.stream_arn = region, stream_arn
        self.records: list[BatchRecord] = []
        self.through = ""  # the last sequence key examined, of any lane
        self.at_end = False  # the last read found nothing more in the shard
        self._last_rows = 0

    def drop_through(self, position: str) -> None:
        """Forget records the cursor has moved past."""
        keep = 0
        while keep < len(self.records) and self.records[keep].sequence_key <= position:
            keep += 1
        del self.records[:keep]
        if self.through < position:
            # Moved by something else than our own batches: what was read no longer applies.
            self.records.clear()
            self.through = position

    def fill(self, *, need: int) -> int:
        """Read the next records after `through`: first their sizes and lanes, then the events
        of this lane's records within READ_AHEAD_BYTES, so a shard of 400 KB items never loads
        more than that at once. Reads what `need` records of this lane take, and twice as much
        as last time while a backlog lasts. Returns how many records of this lane were added."""
        limit = min(READ_AHEAD_ROWS, max(need * self.lanes, 2 * self._last_rows))
        base = ChangeRecord.objects.filter(shard_id=self.shard_id, sequence_key__gt=self.through).order_by("sequence_key")
        columns = ("sequence_key", "size_bytes") + (("partition_key", "item_key") if self.lanes > 1 else ())
        index = list(base.values_list(*columns)[:limit])
        self._last_rows = len(index)
        wanted, budget, examined = [], 0, self.through
        for row in index:
            mine = self.lanes == 1 or lane_of(partition_key=row[2], item_key=row[3], lanes=self.lanes) == self.lane
            if mine:
                if wanted and budget + row[1] > READ_AHEAD_BYTES:
                    break
                budget += row[1]
                wanted.append(row[0])
            examined = row[0]
        self.at_end = len(index) < limit and examined == (index[-1][0] if index else self.through)
        if wanted:
            rows = base.filter(sequence_key__lte=wanted[-1])
            if self.lanes > 1:
                rows = rows.filter(sequence_key__in=wanted)
            chosen = set(wanted)
            self.records.extend(
                BatchRecord(
                    pk=row["id"], sequence_key=row["sequence_key"], sequence_number=row["sequence_number"],
                    received_epoch=row["received_epoch"], created_epoch=row["created_epoch"],
                    json=event_json(row, region=self.region, stream_arn=self.stream_arn),
                )
                for row in event_rows(rows)
                if row["sequence_key"] in chosen
            )
        self.through = examined
        return len(wanted)


def batch_take(*, ahead: ReadAhead, position: str, size: int, patterns, until: str = "") -> Batch:
    """The next batch after `position`: at most `size` records and 6 MB of event, none after
    `until` when it is given, without the records that match none of the filter patterns."""
    ahead.drop_through(position)
    records, filtered = [], []
    through = position
    payload = len(event_payload([]))
    index, read_now = 0, False
    while len(records) < size:
        if index == len(ahead.records):
            # Everything read so far is taken; the batch may still move past other lanes' records.
            through = max(through, min(ahead.through, until) if until else ahead.through)
            if read_now and ahead.at_end:
                break
            ahead.fill(need=size - len(records))
            read_now = True
            continue
        record = ahead.records[index]
        index += 1
        if until and record.sequence_key > until:
            break
        if patterns and not any(pattern.matches(orjson.loads(record.json)) for pattern in patterns):
            # Lambda: records that match no filter are skipped and the iterator moves past them.
            filtered.append(record)
            through = record.sequence_key
            continue
        size_bytes = len(record.json) + 1
        if records and payload + size_bytes > MAX_PAYLOAD_BYTES:
            break
        payload += size_bytes
        records.append(record)
        through = record.sequence_key
    return Batch(records=records, filtered=filtered, through=through)


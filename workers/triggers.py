"""Running triggers: batches of persisted records sent to a target with Lambda's semantics.

Triggers read the change records Shardwatch already saved, never the stream itself, so any
number of them costs DynamoDB nothing and a replay reaches back past the stream's 24 hours.

What must stay true (Lambda developer guide, "Using AWS Lambda with Amazon DynamoDB"):
- Per shard, records go out in order, one batch in flight per cursor. With a
  ParallelizationFactor above 1 a shard has that many lanes, each taking the partition keys
  that hash to it, so order per key holds while lanes run side by side.
- A parent shard is done before its children start.
- Delivery is at least once: a cursor moves only after its batch is settled.
- A function error retries the batch until MaximumRetryAttempts, with backoff; bisecting does
  not count as a retry; what is given up on goes to the dead-letter list and the cursor moves
  on, so a poison record never blocks another shard or trigger.
"""

import functools
import hashlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import NamedTuple
from datetime import UTC, datetime, timedelta

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from streams.filters import compile_pattern
from streams.lambda_event import event_json, event_payload, event_rows, lambda_record, record_event_json
from streams.models import ChangeRecord, Shard
from workers.models import MAX_PAYLOAD_BYTES, DeadLetter, Invocation, Trigger, TriggerCursor

log = logging.getLogger(__name__)

# A runner reads ahead at most this many records, and this many bytes of their SizeBytes.
READ_AHEAD_ROWS = 1000
READ_AHEAD_BYTES = 4 * 1024 * 1024
MAX_BACKOFF_S = 60.0


def lane_of(*, partition_key: str, item_key: str, lanes: int) -> int:
    """The lane a record's partition key belongs to: stable across processes and restarts."""
    if lanes == 1:
        return 0
    digest = hashlib.blake2b(partition_key.encode() or item_key.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % lanes


@functools.lru_cache(maxsize=256)
def _patterns(texts: tuple[str, ...]) -> tuple:
    # Patterns are compiled once per process, not per batch; the texts are the cache key, so
    # an edited trigger gets its new patterns at once.
    return tuple(compile_pattern(text) for text in texts)


def cursors_ensure(*, trigger: Trigger) -> int:
    """A cursor per shard and lane of the trigger's source. A LATEST trigger's cursors start
    after what was saved before the trigger was created; TRIM_HORIZON ones at the oldest
    stored record."""
    created = 0
    shards = Shard.objects.filter(stream__source_id=trigger.source_id)
    existing = set(TriggerCursor.objects.filter(trigger=trigger).values_list("shard_id", "lane"))
    for shard in shards:
        position = ""
        if trigger.starting_position == Trigger.StartingPosition.LATEST:
            # LATEST means from when the trigger was created, whenever its cursors are made;
            # shards that appear later start at their beginning, as Lambda's do.
            saved_before = ChangeRecord.objects.filter(shard=shard, received_at__lte=trigger.created_at)
            position = saved_before.order_by("-sequence_key").values_list("sequence_key", flat=True).first() or ""
        for lane in range(trigger.parallelization_factor):
            if (shard.pk, lane) not in existing:
                TriggerCursor.objects.get_or_create(trigger=trigger, shard=shard, lane=lane, defaults={"position": position})
                created += 1
    return created


def cursors_claim(*, trigger_id: int | None = None, limit: int = 500) -> list[tuple[int, str]]:
    """Lease every cursor with work that nobody holds. Returns (cursor_id, owner) pairs."""
    now = timezone.now()
    candidates = TriggerCursor.objects.filter(trigger__enabled=True).filter(
        _unleased(now)
    ).exclude(next_attempt_at__gt=now)
    if trigger_id is not None:
        candidates = candidates.filter(trigger_id=trigger_id)
    # One query for the work of every cursor: the dispatcher asks every two seconds, for
    # every trigger's every shard and lane.
    candidates = candidates.filter(
        Exists(ChangeRecord.objects.filter(shard_id=OuterRef("shard_id"), sequence_key__gt=OuterRef("position")))
    )
    claimed = []
    for cursor in candidates.select_related("shard")[:limit]:
        if not _parent_done(cursor):
            continue
        owner = uuid.uuid4().hex
        won = TriggerCursor.objects.filter(pk=cursor.pk).filter(_unleased(now)).update(
            lease_owner=owner, lease_expires_at=now + _lease()
        )
        if won == 1:
            claimed.append((cursor.pk, owner))
    return claimed


def _lease(trigger: Trigger | None = None) -> timedelta:
    """How long a runner holds a cursor: renewed before each invocation, for the invocation's
    whole timeout, so a slow handler is never taken over while it runs."""
    extra = trigger.timeout_s if trigger else 0
    return timedelta(seconds=settings.SHARDWATCH_TRIGGER_LEASE_S + extra)


def _unleased(now) -> Q:
    return Q(lease_owner="") | Q(lease_expires_at__lt=now)


def _parent_done(cursor: TriggerCursor) -> bool:
    parent_id = cursor.shard.parent_shard_id
    if not parent_id:
        return True
    parent = Shard.objects.filter(stream_id=cursor.shard.stream_id, shard_id=parent_id).first()
    if parent is None:
        return True  # the parent aged out of the stream before we saw it
    if parent.state != Shard.State.FINISHED:
        return False
    # Every lane of this trigger on the parent must have passed the parent's last record.
    last = ChangeRecord.objects.filter(shard=parent).order_by("-sequence_key").values_list("sequence_key", flat=True).first()
    if last is None:
        return True
    return not TriggerCursor.objects.filter(trigger_id=cursor.trigger_id, shard=parent, position__lt=last).exists()


def lease_release(*, cursor_id: int, owner: str) -> None:
    TriggerCursor.objects.filter(pk=cursor_id, lease_owner=owner).update(lease_owner="", lease_expires_at=None)


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


def _backoff(attempt: int) -> timedelta:
    return timedelta(seconds=random.uniform(0.5, min(MAX_BACKOFF_S, 1.0 * 2 ** min(attempt, 8))))


# The error type of an invocation whose function returned normally with a response that
# ReportBatchItemFailures cannot read: a failure of the whole batch, but not a function error.
INVALID_RESPONSE = "InvalidBatchItemFailures"


class FailureReport(NamedTuple):
    """What a function's response under ReportBatchItemFailures says about its batch."""

    failed_from: int | None  # index in the batch of the lowest reported failure; None: all succeeded
    problem: str = ""  # why the response is malformed (the whole batch failed); "" when it is valid


def batch_item_failures(*, response, records: list) -> FailureReport:
    """Read a function's response under ReportBatchItemFailures, the same way for every kind of
    target. `response` is InvokeResult.response: the parsed JSON, None for null or no answer,
    targets.NOT_JSON for an answer that is not JSON. `records` is the batch as sent, in order
    (anything with a `sequence_number`).

    Lambda's rules ("Configuring partial batch response with DynamoDB and Lambda", success and
    failure conditions) and AWS's recorded runs (localstack's AWS-validated
    test_dynamodb_report_batch_item_success_scenarios / _failure_scenarios):
    - success: null, [], {} and an object whose batchItemFailures is null, [] or absent;
    - a partial failure: a list of {"itemIdentifier": "<SequenceNumber>"}; the lowest one is
      where the batch is retried from (duplicates and order do not matter);
    - the whole batch failed: an itemIdentifier that is missing, null, "" or not a string
      (recorded: 123).
    Everything else has no AWS rule or record. It is read as a whole-batch failure, the reading
    that loses no record: the batch is retried, and given up on only into the dead-letter list.
    That covers an answer that is not JSON (Lambda's SQS rules list "an invalid JSON response"
    as a complete failure), a non-empty list, a string, a number, true or false, a
    batchItemFailures that is not a list, an entry that is not an object, and an
    itemIdentifier that is not a sequence number of the batch (the SQS rules fail the batch on
    an unknown message ID). Keys other than batchItemFailures and itemIdentifier are ignored:
    a missing batchItemFailures is the null list AWS recorded for {}, and Lambda's own
    tumbling-window response carries "state" beside it. Every case is in
    tests/test_batch_responses.py with its source.
    """
    from workers.targets import NOT_JSON

    if response is NOT_JSON:
        return FailureReport(None, "The response is not JSON.")
    if response is None or response == []:
        return FailureReport(None)
    if not isinstance(response, dict):
        return FailureReport(None, f"The response is {_json_kind(response)}, not an object.")
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return FailureReport(None)
    if not isinstance(failures, list):
        return FailureReport(None, f"batchItemFailures is {_json_kind(failures)}, not a list.")
    index_of = {record.sequence_number: index for index, record in enumerate(records)}
    lowest = None
    for position, failure in enumerate(failures):
        entry = f"batchItemFailures[{position}]"
        if not isinstance(failure, dict):
            return FailureReport(None, f"{entry} is {_json_kind(failure)}, not an object.")
        if "itemIdentifier" not in failure:
            return FailureReport(None, f"{entry} has no itemIdentifier.")
        identifier = failure["itemIdentifier"]
        if not isinstance(identifier, str):
            return FailureReport(None, f"{entry}.itemIdentifier is {_json_kind(identifier)}, not a string.")
        if identifier == "":
            return FailureReport(None, f"{entry}.itemIdentifier is empty.")
        if identifier not in index_of:
            return FailureReport(None, f"{entry}.itemIdentifier {identifier[:100]!r} is not a sequence number of the batch.")
        lowest = index_of[identifier] if lowest is None else min(lowest, index_of[identifier])
    return FailureReport(lowest)


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if value == "" else "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


INVOCATIONS_GROUP = "invocations"


def invocation_row(invocation: Invocation) -> dict:
    """What the live invocation timeline shows of one invocation."""
    return {
        "id": invocation.pk,
        "trigger_id": invocation.trigger_id,
        "shard_id": invocation.shard_id,
        "lane": invocation.lane,
        "outcome": invocation.outcome,
        "record_count": invocation.record_count,
        "filtered_count": invocation.filtered_count,
        "attempt": invocation.attempt,
        "from_bisect": invocation.from_bisect,
        "started_at": invocation.started_at.isoformat(),
        "duration_ms": round(invocation.duration_ms, 1),
        "error_type": invocation.error_type,
        "error_message": invocation.error_message[:300],
        "first_sequence_number": invocation.first_sequence_number,
        "last_sequence_number": invocation.last_sequence_number,
    }


def invocations_publish(rows: list[dict]) -> None:
    """Tell the live timelines about saved invocations, in one message."""
    from streams.push import group_publish

    if rows:
        group_publish(group=INVOCATIONS_GROUP, message={"type": "invocations.new", "invocations": rows})


def _invocation_record(*, cursor, batch_records, filtered, outcome, result=None, attempt, from_bisect, started_at,
                       error="", announce=None):
    """Save an invocation and, once committed, pass its timeline row to `announce` (by
    default, published at once)."""
    invocation = _invocation_create(
        cursor=cursor, batch_records=batch_records, filtered=filtered, outcome=outcome, result=result,
        attempt=attempt, from_bisect=from_bisect, started_at=started_at, error=error,
    )
    row = invocation_row(invocation)
    transaction.on_commit(lambda: announce(row) if announce else invocations_publish([row]))
    return invocation


def _invocation_create(*, cursor, batch_records, filtered, outcome, result, attempt, from_bisect, started_at, error):
    return Invocation.objects.create(
        trigger_id=cursor.trigger_id,
        shard_id=cursor.shard_id,
        lane=cursor.lane,
        first_sequence_number=batch_records[0].sequence_number,
        last_sequence_number=batch_records[-1].sequence_number,
        record_count=len(batch_records),
        filtered_count=filtered,
        record_ids=[record.pk for record in batch_records],
        attempt=attempt,
        from_bisect=from_bisect,
        started_at=started_at,
        duration_ms=result.duration_ms if result else 0.0,
        outcome=outcome,
        error_type=result.error_type if result else "",
        error_message=(result.error_message if result else error)[:10000],
        response_body=(result.body if result else "")[:65536],
    )


def dead_letter(*, cursor, records, invocation, reason: str) -> DeadLetter:
    """Give up on records: keep them in the dead-letter list, and tell the trigger's SQS/SNS
    destination (metadata only, as Lambda does: the records stay here)."""
    letter = DeadLetter.objects.create(
        trigger_id=cursor.trigger_id,
        shard_id=cursor.shard_id,
        invocation=invocation,
        first_sequence_number=records[0].sequence_number,
        last_sequence_number=records[-1].sequence_number,
        record_ids=[record.pk for record in records],
        reason=reason,
    )
    transaction.on_commit(lambda: _notify_destination(letter_id=letter.pk))
    return letter


def _notify_destination(*, letter_id: int) -> None:
    from workers.destinations import destination_notify

    destination_notify(letter_id=letter_id)


class CursorRunner:
    """One lease on one cursor, sending its batches. The cursor, its trigger and the records
    read ahead stay in memory between batches; every change to the cursor is a conditional
    UPDATE on the lease, so a runner that lost its lease (it expired, or the position was
    reset from the admin) learns it at its next write and stops."""

    # How often a long run looks at its trigger again, to notice it was disabled or edited.
    TRIGGER_RELOAD_S = 1.0
    # A run publishes the invocations it saved at most this often: a message per batch would
    # cost each batch a Redis round trip. Slow handlers still show at once (see step()).
    PUBLISH_EVERY_S = 0.2

    def __init__(self, *, cursor_id: int, owner: str):
        self.owner = owner
        self.cursor = TriggerCursor.objects.select_related("trigger__source", "shard__stream").get(pk=cursor_id)
        self.lost = self.cursor.lease_owner != owner
        self.unpublished: list[dict] = []
        self._published_at = time.monotonic()
        self._trigger_use(self.cursor.trigger)
        self.ahead = ReadAhead(
            shard_id=self.cursor.shard_id, lane=self.cursor.lane, lanes=self.trigger.parallelization_factor,
            region=self.trigger.source.region, stream_arn=self.cursor.shard.stream.arn,
        )

    def _trigger_use(self, trigger: Trigger) -> None:
        self.trigger = trigger
        self.patterns = _patterns(tuple(trigger.filter_patterns))
        self._trigger_read_at = time.monotonic()

    def _trigger_current(self) -> bool:
        """Whether the run may go on with the trigger as it now is."""
        if time.monotonic() - self._trigger_read_at > self.TRIGGER_RELOAD_S:
            trigger = Trigger.objects.select_related("source").filter(pk=self.trigger.pk).first()
            if trigger is None or trigger.parallelization_factor != self.ahead.lanes:
                return False  # lanes are in what was read ahead; a new runner starts afresh
            self._trigger_use(trigger)
        return self.trigger.enabled

    def publish(self, *, due_only: bool = False) -> None:
        """Publish the invocations saved since last time; with due_only, only when that was
        PUBLISH_EVERY_S ago."""
        if self.unpublished and (not due_only or time.monotonic() - self._published_at >= self.PUBLISH_EVERY_S):
            rows, self.unpublished = self.unpublished, []
            invocations_publish(rows)
            self._published_at = time.monotonic()

    def settle(self, **fields) -> bool:
        """Change the cursor, only while we still hold it, and extend the lease for the next
        invocation in the same write."""
        fields.setdefault("lease_expires_at", timezone.now() + _lease(self.trigger))
        if TriggerCursor.objects.filter(pk=self.cursor.pk, lease_owner=self.owner).update(**fields) != 1:
            self.lost = True
            return False
        for name, value in fields.items():
            setattr(self.cursor, name, value)
        return True

    def step(self) -> bool:
        """Send the next batch and settle it. Returns whether more work is ready now."""
        from workers.targets import target_invoke

        if self.lost or not self._trigger_current():
            return False
        cursor, trigger = self.cursor, self.trigger
        limit = cursor.batch_limit or trigger.batch_size
        batch = batch_take(ahead=self.ahead, position=cursor.position, size=limit, patterns=self.patterns,
                           until=cursor.bisect_end)
        now = timezone.now()
        if not batch.records:
            if batch.through != cursor.position:
                self.settle(position=batch.through, filtered_total=cursor.filtered_total + len(batch.filtered))
            return False

        window = trigger.maximum_batching_window_s
        if window and len(batch.records) < limit and not cursor.attempt:
            ready_at = datetime.fromtimestamp(batch.records[0].received_epoch + window, tz=UTC)
            if ready_at > now:
                # Lambda waits for a full batch, the 6 MB limit or the window, whichever is first.
                self.settle(next_attempt_at=ready_at)
                return False

        if trigger.maximum_record_age_s != -1:
            oldest_allowed = now.timestamp() - trigger.maximum_record_age_s
            expired = [record for record in batch.records if record.created_epoch < oldest_allowed]
            if expired:
                # Records are in stream order, so the expired ones are a prefix of the batch.
                stale = batch.records[: batch.records.index(expired[-1]) + 1]
                with transaction.atomic():
                    invocation = _invocation_record(
                        cursor=cursor, batch_records=stale, filtered=0, outcome=Invocation.Outcome.DISCARDED,
                        attempt=cursor.attempt, from_bisect=False, started_at=now, announce=self.unpublished.append,
                        error=f"Older than MaximumRecordAgeInSeconds ({trigger.maximum_record_age_s} s).",
                    )
                    dead_letter(cursor=cursor, records=stale, invocation=invocation, reason=invocation.error_message)
                    return self.settle(position=stale[-1].sequence_key, attempt=0)

        from_bisect = bool(cursor.batch_limit)
        # Before a handler that may take long, so the timeline never waits for it.
        self.publish(due_only=True)
        started_at = timezone.now()
        # The lease must outlast the invocation, so a slow handler is never taken over while it
        # runs. Each settle extends it; it is renewed here only when that was long ago.
        renew_below = timedelta(seconds=trigger.timeout_s + settings.SHARDWATCH_TRIGGER_LEASE_S / 2)
        if cursor.lease_expires_at is None or cursor.lease_expires_at - started_at < renew_below:
            if not self.settle(lease_expires_at=started_at + _lease(trigger)):
                return False
        result = target_invoke(trigger=trigger, payload=batch.payload(), request_id=str(uuid.uuid4()))
        return self._after_invoke(batch=batch, result=result, from_bisect=from_bisect, started_at=started_at)

    def _after_invoke(self, *, batch, result, from_bisect, started_at) -> bool:
        cursor, trigger = self.cursor, self.trigger
        records = batch.records
        filtered_total = cursor.filtered_total + len(batch.filtered)
        common = {"cursor": cursor, "batch_records": records, "filtered": len(batch.filtered), "result": result,
                  "attempt": cursor.attempt, "from_bisect": from_bisect, "started_at": started_at,
                  "announce": self.unpublished.append}
        # The invocation is recorded even when the lease turns out to be lost: it happened.
        with transaction.atomic():
            if result.outcome == "throttled":
                # Never reached the function: retried regardless of MaximumRetryAttempts.
                _invocation_record(outcome=Invocation.Outcome.FUNCTION_ERROR, **common)
                self.settle(next_attempt_at=timezone.now() + _backoff(1))
                return False
            failed_from = None
            outcome = result.outcome
            if outcome == "success" and trigger.report_batch_item_failures:
                report = batch_item_failures(response=result.response, records=records)
                failed_from = report.failed_from
                if report.problem:
                    outcome = "function_error"
                    common["result"] = _malformed(result, report)
            if outcome == "success" and failed_from is None:
                _invocation_record(outcome=Invocation.Outcome.SUCCESS, **common)
                # The other half of a split batch still goes out as a bisected batch.
                split_left = bool(cursor.bisect_end) and batch.through < cursor.bisect_end
                return self.settle(position=batch.through, attempt=0, filtered_total=filtered_total,
                                   next_attempt_at=None, batch_limit=cursor.batch_limit if split_left else 0,
                                   bisect_end=cursor.bisect_end if split_left else "")
            if outcome == "success":
                # Checkpoint just before the lowest failed record; retry from it.
                invocation = _invocation_record(outcome=Invocation.Outcome.PARTIAL_FAILURE, **common)
                position = records[failed_from - 1].sequence_key if failed_from else cursor.position
                return self._retry_or_give_up(invocation=invocation, records=records[failed_from:],
                                              position=position, filtered_total=filtered_total)
            invocation = _invocation_record(
                outcome=Invocation.Outcome.TIMEOUT if outcome == "timeout" else Invocation.Outcome.FUNCTION_ERROR, **common
            )
            if trigger.bisect_batch_on_function_error and len(records) > 1:
                # Splitting does not count towards the retry quota.
                return self.settle(batch_limit=max(1, len(records) // 2), bisect_end=records[-1].sequence_key,
                                   next_attempt_at=None)
            return self._retry_or_give_up(invocation=invocation, records=records, position=cursor.position,
                                          filtered_total=cursor.filtered_total)

    def _retry_or_give_up(self, *, invocation, records, position, filtered_total) -> bool:
        cursor, trigger = self.cursor, self.trigger
        attempt = cursor.attempt + 1
        if trigger.maximum_retry_attempts != -1 and attempt > trigger.maximum_retry_attempts:
            dead_letter(cursor=cursor, records=records, invocation=invocation,
                        reason=f"Retries exhausted after {cursor.attempt + 1} attempt(s): "
                               f"{invocation.error_type or invocation.outcome} {invocation.error_message}".strip())
            end = cursor.bisect_end if cursor.bisect_end > records[-1].sequence_key else ""
            return self.settle(position=records[-1].sequence_key, attempt=0, filtered_total=filtered_total,
                               next_attempt_at=None, batch_limit=cursor.batch_limit if end else 0, bisect_end=end)
        self.settle(position=position, attempt=attempt, filtered_total=filtered_total,
                    next_attempt_at=timezone.now() + _backoff(attempt))
        return False


def cursor_process(*, cursor_id: int, owner: str) -> bool:
    """Send the next batch of one cursor and settle it. Returns whether more work is ready now."""
    runner = CursorRunner(cursor_id=cursor_id, owner=owner)
    try:
        return runner.step()
    finally:
        runner.publish()


def cursor_run(*, cursor_id: int, owner: str, budget_s: float | None = None) -> int:
    """Send batches of one cursor until nothing is ready or `budget_s` is spent, then give up
    the lease. Returns the number of steps taken."""
    deadline = None if budget_s is None else time.monotonic() + budget_s
    steps, runner = 0, None
    try:
        runner = CursorRunner(cursor_id=cursor_id, owner=owner)
        while True:
            steps += 1
            if not runner.step() or (deadline is not None and time.monotonic() > deadline):
                break
    finally:
        lease_release(cursor_id=cursor_id, owner=owner)
        if runner is not None:
            runner.publish()
    return steps


def _malformed(result, report: FailureReport):
    """The result of an invocation whose response ReportBatchItemFailures cannot read."""
    from dataclasses import replace

    return replace(result, outcome="function_error", error_type=INVALID_RESPONSE,
                   error_message=f"The batchItemFailures response is malformed: {report.problem}")


# A reset also ends the lease: a runner holding the cursor fails its next conditional write and
# stops, instead of writing its own idea of the position over the reset one.
_RESET = {"attempt": 0, "batch_limit": 0, "bisect_end": "", "next_attempt_at": None, "lease_owner": "",
          "lease_expires_at": None}


def cursors_reset(*, trigger: Trigger, position: str) -> None:
    """Move every cursor of a trigger to TRIM_HORIZON or LATEST, clearing retries."""
    cursors_ensure(trigger=trigger)
    for cursor in TriggerCursor.objects.filter(trigger=trigger):
        if position == "LATEST":
            newest = ChangeRecord.objects.filter(shard_id=cursor.shard_id).order_by("-sequence_key")
            target = newest.values_list("sequence_key", flat=True).first() or ""
        else:
            target = ""
        TriggerCursor.objects.filter(pk=cursor.pk).update(position=target, **_RESET)


def cursors_reset_to(*, trigger: Trigger, at=None, sequence_number: str = "") -> None:
    """Move every cursor so that the next record sent is the first saved at or after `at`
    (ApproximateCreationDateTime), or the record with `sequence_number` and those after it."""
    from streams.models import sequence_key

    cursors_ensure(trigger=trigger)
    for cursor in TriggerCursor.objects.filter(trigger=trigger):
        earlier = ChangeRecord.objects.filter(shard_id=cursor.shard_id)
        if sequence_number:
            earlier = earlier.filter(sequence_key__lt=sequence_key(sequence_number))
        else:
            earlier = earlier.filter(approximate_creation_time__lt=at)
        position = earlier.order_by("-sequence_key").values_list("sequence_key", flat=True).first() or ""
        TriggerCursor.objects.filter(pk=cursor.pk).update(position=position, **_RESET)


def records_replay(*, trigger: Trigger, records: list[ChangeRecord]) -> list[Invocation]:
    """Send stored records to the trigger's target again, in batches of BatchSize, without
    moving its cursors. Each batch is tried once; what failed goes to the dead-letter list: the
    whole batch, or after a partial failure the records from the lowest reported one on."""
    from workers.targets import target_invoke

    invocations = []
    for start in range(0, len(records), trigger.batch_size):
        batch = records[start : start + trigger.batch_size]
        started_at = timezone.now()
        result = target_invoke(
            trigger=trigger, payload=event_payload([record_event_json(record) for record in batch]),
            request_id=str(uuid.uuid4()),
        )
        outcome = {"success": Invocation.Outcome.SUCCESS, "timeout": Invocation.Outcome.TIMEOUT}.get(
            result.outcome, Invocation.Outcome.FUNCTION_ERROR
        )
        failed = batch
        if outcome == Invocation.Outcome.SUCCESS and trigger.report_batch_item_failures:
            # Read as a cursor's batch is: a malformed response fails the whole batch, and a
            # partial failure gives up on the lowest reported record and those after it.
            report = batch_item_failures(response=result.response, records=batch)
            if report.problem:
                outcome, result = Invocation.Outcome.FUNCTION_ERROR, _malformed(result, report)
            elif report.failed_from is not None:
                outcome, failed = Invocation.Outcome.PARTIAL_FAILURE, batch[report.failed_from:]
        cursor = TriggerCursor(trigger=trigger, shard_id=batch[0].shard_id, lane=0)
        with transaction.atomic():
            invocation = _invocation_record(
                cursor=cursor, batch_records=batch, filtered=0, outcome=outcome, result=result,
                attempt=0, from_bisect=False, started_at=started_at,
            )
            if outcome != Invocation.Outcome.SUCCESS:
                dead_letter(cursor=cursor, records=failed, invocation=invocation, reason=f"Replay failed: {outcome}")
        invocations.append(invocation)
    return invocations


def dead_letter_retry(*, letter: DeadLetter) -> list[Invocation]:
    """Send a dead-letter entry's records again; marks the entry retried."""
    by_id = {record.pk: record for record in ChangeRecord.objects.filter(pk__in=letter.record_ids).select_related("source", "shard__stream")}
    records = [by_id[pk] for pk in letter.record_ids if pk in by_id]
    invocations = records_replay(trigger=letter.trigger, records=records) if records else []
    DeadLetter.objects.filter(pk=letter.pk).update(retried_at=timezone.now())
    return invocations


def pattern_try(*, trigger: Trigger, last: int = 100) -> tuple[int, list[ChangeRecord]]:
    """The trigger's filter patterns against its source's newest `last` records: how many were
    tried, and which would be sent."""
    patterns = _patterns(tuple(trigger.filter_patterns))
    records = list(
        ChangeRecord.objects.filter(source_id=trigger.source_id).select_related("source", "shard__stream").order_by("-id")[:last]
    )
    if not patterns:
        return len(records), records
    return len(records), [record for record in records if any(p.matches(lambda_record(record)) for p in patterns)]

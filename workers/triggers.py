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

import hashlib
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from streams.filters import compile_pattern
from streams.lambda_event import lambda_record
from streams.models import ChangeRecord, Shard
from workers.models import MAX_PAYLOAD_BYTES, DeadLetter, Invocation, Trigger, TriggerCursor

log = logging.getLogger(__name__)

READ_CHUNK = 1000
MAX_BACKOFF_S = 60.0


def lane_of(record: ChangeRecord, lanes: int) -> int:
    """The lane a record's partition key belongs to: stable across processes and restarts."""
    if lanes == 1:
        return 0
    digest = hashlib.blake2b(record.partition_key.encode() or record.item_key.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % lanes


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
    claimed = []
    for cursor in candidates.select_related("shard")[:limit]:
        if not _has_work(cursor) or not _parent_done(cursor):
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


def _has_work(cursor: TriggerCursor) -> bool:
    return ChangeRecord.objects.filter(shard_id=cursor.shard_id, sequence_key__gt=cursor.position).exists()


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


@dataclass
class Batch:
    records: list[ChangeRecord]
    events: list[dict]  # the records' Lambda event records, in the same order
    filtered: list[ChangeRecord]
    # Where the cursor may move when the batch is settled: past the last record read,
    # including filtered-out records after the last one sent.
    through: str


def batch_read(*, cursor: TriggerCursor, trigger: Trigger, size: int, patterns, until: str = "") -> Batch:
    """The next records of this cursor's lane, filtered, at most `size` and 6 MB of event,
    and none after `until` when it is given."""
    records, events, filtered = [], [], []
    through = cursor.position
    payload = len(b'{"Records":[]}')
    after = cursor.position
    while len(records) < size:
        # Read about what the batch still needs (more with lanes, which share the shard), not
        # a fixed chunk: decoding images nobody sends is most of a batch's overhead.
        wanted = min(READ_CHUNK, (size - len(records)) * trigger.parallelization_factor + len(patterns) * 10 + 1)
        chunk = list(
            ChangeRecord.objects.filter(shard_id=cursor.shard_id, sequence_key__gt=after)
            .select_related("source", "shard__stream")
            .defer("diff", "changed_paths", "item_hash", "decode_error")
            .order_by("sequence_key")[:wanted]
        )
        if not chunk:
            break
        for record in chunk:
            if until and record.sequence_key > until:
                return Batch(records=records, events=events, filtered=filtered, through=through)
            after = record.sequence_key
            if lane_of(record, trigger.parallelization_factor) != cursor.lane:
                through = record.sequence_key
                continue
            event = lambda_record(record)
            if patterns and not any(pattern.matches(event) for pattern in patterns):
                # Lambda: records that match no filter are skipped and the iterator moves past them.
                filtered.append(record)
                through = record.sequence_key
                continue
            size_bytes = len(orjson.dumps(event)) + 1
            if records and payload + size_bytes > MAX_PAYLOAD_BYTES:
                return Batch(records=records, events=events, filtered=filtered, through=through)
            payload += size_bytes
            records.append(record)
            events.append(event)
            through = record.sequence_key
            if len(records) >= size:
                break
        if len(chunk) < wanted:
            break
    return Batch(records=records, events=events, filtered=filtered, through=through)


def _backoff(attempt: int) -> timedelta:
    return timedelta(seconds=random.uniform(0.5, min(MAX_BACKOFF_S, 1.0 * 2 ** min(attempt, 8))))


def batch_item_failures(*, response, records: list[ChangeRecord]) -> tuple[bool, int | None]:
    """Read a ReportBatchItemFailures response. Returns (valid, index of the lowest failed
    record or None when everything succeeded).

    Lambda's rules ("Reporting batch item failures for DynamoDB"): no response, an empty list
    or a null list is success; an itemIdentifier that is missing, null, empty or not a sequence
    number of the batch makes the whole batch a failure.
    """
    if response is None:
        return True, None
    if not isinstance(response, dict):
        return False, None
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return True, None
    if not isinstance(failures, list):
        return False, None
    index_of = {record.sequence_number: index for index, record in enumerate(records)}
    lowest = None
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in index_of:
            return False, None
        lowest = index_of[identifier] if lowest is None else min(lowest, index_of[identifier])
    return True, lowest


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


def _invocation_publish(invocation: Invocation) -> None:
    from streams.push import group_publish

    row = invocation_row(invocation)
    group_publish(group=INVOCATIONS_GROUP, message={"type": "invocations.new", "invocations": [row]})


def _invocation_record(*, cursor, batch_records, filtered, outcome, result=None, attempt, from_bisect, started_at, error=""):
    invocation = _invocation_create(
        cursor=cursor, batch_records=batch_records, filtered=filtered, outcome=outcome, result=result,
        attempt=attempt, from_bisect=from_bisect, started_at=started_at, error=error,
    )
    transaction.on_commit(lambda: _invocation_publish(invocation))
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


def _settle(cursor_id: int, owner: str, **fields) -> bool:
    """Move a cursor, only while we still hold it."""
    return TriggerCursor.objects.filter(pk=cursor_id, lease_owner=owner).update(**fields) == 1


def cursor_process(*, cursor_id: int, owner: str) -> bool:
    """Send the next batch of one cursor and settle it. Returns whether more work is ready now."""
    from workers.targets import target_invoke

    cursor = TriggerCursor.objects.select_related("trigger__source", "shard").get(pk=cursor_id)
    if cursor.lease_owner != owner or not cursor.trigger.enabled:
        return False
    trigger = cursor.trigger
    patterns = [compile_pattern(text) for text in trigger.filter_patterns]
    limit = cursor.batch_limit or trigger.batch_size
    batch = batch_read(cursor=cursor, trigger=trigger, size=limit, patterns=patterns, until=cursor.bisect_end)
    now = timezone.now()
    filtered = len(batch.filtered)
    if not batch.records:
        if batch.through != cursor.position:
            _settle(cursor_id, owner, position=batch.through, filtered_total=cursor.filtered_total + filtered)
        return False

    window = trigger.maximum_batching_window_s
    if window and len(batch.records) < limit and not cursor.attempt:
        ready_at = batch.records[0].received_at + timedelta(seconds=window)
        if ready_at > now:
            # Lambda waits for a full batch, the 6 MB limit or the window, whichever is first.
            _settle(cursor_id, owner, next_attempt_at=ready_at)
            return False

    if trigger.maximum_record_age_s != -1:
        oldest_allowed = now - timedelta(seconds=trigger.maximum_record_age_s)
        expired = [record for record in batch.records if record.approximate_creation_time < oldest_allowed]
        if expired:
            # Records are in stream order, so the expired ones are a prefix of the batch.
            cut = batch.records.index(expired[-1]) + 1
            stale = batch.records[:cut]
            with transaction.atomic():
                invocation = _invocation_record(
                    cursor=cursor, batch_records=stale, filtered=0, outcome=Invocation.Outcome.DISCARDED,
                    attempt=cursor.attempt, from_bisect=False, started_at=now,
                    error=f"Older than MaximumRecordAgeInSeconds ({trigger.maximum_record_age_s} s).",
                )
                dead_letter(cursor=cursor, records=stale, invocation=invocation, reason=invocation.error_message)
                _settle(cursor_id, owner, position=stale[-1].sequence_key, attempt=0)
            return True

    event = {"Records": batch.events}
    from_bisect = bool(cursor.batch_limit)
    started_at = timezone.now()
    if not _settle(cursor_id, owner, lease_expires_at=started_at + _lease(trigger)):
        return False  # the lease expired and another runner has the cursor
    result = target_invoke(trigger=trigger, event=event, request_id=str(uuid.uuid4()))
    return _after_invoke(cursor=cursor, owner=owner, batch=batch, result=result, from_bisect=from_bisect, started_at=started_at)


def _after_invoke(*, cursor, owner, batch, result, from_bisect, started_at) -> bool:
    trigger = cursor.trigger
    records = batch.records
    filtered_total = cursor.filtered_total + len(batch.filtered)
    common = {"cursor": cursor, "batch_records": records, "filtered": len(batch.filtered), "result": result,
              "attempt": cursor.attempt, "from_bisect": from_bisect, "started_at": started_at}
    with transaction.atomic():
        if result.outcome == "throttled":
            # Never reached the function: retried regardless of MaximumRetryAttempts.
            _invocation_record(outcome=Invocation.Outcome.FUNCTION_ERROR, **common)
            _settle(cursor.pk, owner, next_attempt_at=timezone.now() + _backoff(1))
            return False
        failed_from = None
        outcome = result.outcome
        if outcome == "success" and trigger.report_batch_item_failures:
            valid, failed_from = batch_item_failures(response=result.response, records=records)
            if not valid:
                outcome = "function_error"
                result = _with_error(result, "InvalidBatchItemFailures", "The batchItemFailures response is malformed.")
                common["result"] = result
        if outcome == "success" and failed_from is None:
            _invocation_record(outcome=Invocation.Outcome.SUCCESS, **common)
            # The other half of a split batch still goes out as a bisected batch.
            split_left = bool(cursor.bisect_end) and batch.through < cursor.bisect_end
            _settle(cursor.pk, owner, position=batch.through, attempt=0, filtered_total=filtered_total,
                    next_attempt_at=None, batch_limit=cursor.batch_limit if split_left else 0,
                    bisect_end=cursor.bisect_end if split_left else "")
            return True
        if outcome == "success":
            # Checkpoint just before the lowest failed record; retry from it.
            invocation = _invocation_record(outcome=Invocation.Outcome.PARTIAL_FAILURE, **common)
            position = records[failed_from - 1].sequence_key if failed_from else cursor.position
            retry_records = records[failed_from:]
            return _retry_or_give_up(cursor=cursor, owner=owner, invocation=invocation, records=retry_records,
                                     position=position, filtered_total=filtered_total)
        invocation = _invocation_record(
            outcome=Invocation.Outcome.TIMEOUT if outcome == "timeout" else Invocation.Outcome.FUNCTION_ERROR, **common
        )
        if trigger.bisect_batch_on_function_error and len(records) > 1:
            # Splitting does not count towards the retry quota.
            _settle(cursor.pk, owner, batch_limit=max(1, len(records) // 2), bisect_end=records[-1].sequence_key,
                    next_attempt_at=None)
            return True
        return _retry_or_give_up(cursor=cursor, owner=owner, invocation=invocation, records=records,
                                 position=cursor.position, filtered_total=cursor.filtered_total)


def _with_error(result, error_type, message):
    from dataclasses import replace

    return replace(result, outcome="function_error", error_type=error_type, error_message=message)


def _retry_or_give_up(*, cursor, owner, invocation, records, position, filtered_total) -> bool:
    trigger = cursor.trigger
    attempt = cursor.attempt + 1
    if trigger.maximum_retry_attempts != -1 and attempt > trigger.maximum_retry_attempts:
        dead_letter(cursor=cursor, records=records, invocation=invocation,
                    reason=f"Retries exhausted after {cursor.attempt + 1} attempt(s): "
                           f"{invocation.error_type or invocation.outcome} {invocation.error_message}".strip())
        end = cursor.bisect_end if cursor.bisect_end > records[-1].sequence_key else ""
        _settle(cursor.pk, owner, position=records[-1].sequence_key, attempt=0, filtered_total=filtered_total,
                next_attempt_at=None, batch_limit=cursor.batch_limit if end else 0, bisect_end=end)
        return True
    _settle(cursor.pk, owner, position=position, attempt=attempt, filtered_total=filtered_total,
            next_attempt_at=timezone.now() + _backoff(attempt))
    return False


def cursors_reset(*, trigger: Trigger, position: str) -> None:
    """Move every cursor of a trigger to TRIM_HORIZON or LATEST, clearing retries."""
    cursors_ensure(trigger=trigger)
    for cursor in TriggerCursor.objects.filter(trigger=trigger):
        if position == "LATEST":
            newest = ChangeRecord.objects.filter(shard_id=cursor.shard_id).order_by("-sequence_key")
            target = newest.values_list("sequence_key", flat=True).first() or ""
        else:
            target = ""
        TriggerCursor.objects.filter(pk=cursor.pk).update(
            position=target, attempt=0, batch_limit=0, bisect_end="", next_attempt_at=None
        )


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
        TriggerCursor.objects.filter(pk=cursor.pk).update(
            position=position, attempt=0, batch_limit=0, bisect_end="", next_attempt_at=None
        )


def records_replay(*, trigger: Trigger, records: list[ChangeRecord]) -> list[Invocation]:
    """Send stored records to the trigger's target again, in batches of BatchSize, without
    moving its cursors. Each batch is tried once; a failed one goes to the dead-letter list."""
    from workers.targets import target_invoke

    invocations = []
    for start in range(0, len(records), trigger.batch_size):
        batch = records[start : start + trigger.batch_size]
        started_at = timezone.now()
        result = target_invoke(
            trigger=trigger, event={"Records": [lambda_record(record) for record in batch]}, request_id=str(uuid.uuid4())
        )
        outcome = {"success": Invocation.Outcome.SUCCESS, "timeout": Invocation.Outcome.TIMEOUT}.get(
            result.outcome, Invocation.Outcome.FUNCTION_ERROR
        )
        if outcome == Invocation.Outcome.SUCCESS and trigger.report_batch_item_failures:
            valid, failed_from = batch_item_failures(response=result.response, records=batch)
            if not valid or failed_from is not None:
                outcome = Invocation.Outcome.PARTIAL_FAILURE
        cursor = TriggerCursor(trigger=trigger, shard_id=batch[0].shard_id, lane=0)
        with transaction.atomic():
            invocation = _invocation_record(
                cursor=cursor, batch_records=batch, filtered=0, outcome=outcome, result=result,
                attempt=0, from_bisect=False, started_at=started_at,
            )
            if outcome != Invocation.Outcome.SUCCESS:
                dead_letter(cursor=cursor, records=batch, invocation=invocation, reason=f"Replay failed: {outcome}")
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
    patterns = [compile_pattern(text) for text in trigger.filter_patterns]
    records = list(
        ChangeRecord.objects.filter(source_id=trigger.source_id).select_related("source", "shard__stream").order_by("-id")[:last]
    )
    if not patterns:
        return len(records), records
    return len(records), [record for record in records if any(p.matches(lambda_record(record)) for p in patterns)]

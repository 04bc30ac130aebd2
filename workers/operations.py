"""What an operator does to a trigger from the admin: replay records, retry a dead letter, try
the filter patterns; and, from a poison-record alert, skip or bisect the batch a cursor retries.

A replay or a retry moves no cursor: it sends stored records again beside the trigger's own
runs, and what fails is given up on at once, into the dead-letter list. Its invocations are
marked `replay`, so that they are never taken for a cursor's batch. Skipping or bisecting a
batch does move its cursor, under the cursor's lease, as a runner would; the batch is the one
the cursor's runner sends next (workers.selectors.cursor_batch).
"""

import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from streams.lambda_event import event_payload, lambda_record, record_event_json
from streams.masking import Masking
from streams.records import NO_MASKING
from streams.models import ChangeRecord
from workers.batches import patterns_compile
from workers.cursors import pending_since_next
from workers.invocations import dead_letter_save, invocation_failure, invocation_save, trigger_meter_count
from workers.models import DeadLetter, Invocation, Outcome, Trigger, TriggerCursor
from workers.responses import batch_item_failures, result_malformed
from workers.selectors import cursor_failing_batch
from workers.targets import target_invoke


def records_replay(*, trigger: Trigger, records: list[ChangeRecord]) -> list[Invocation]:
    """Send stored records to the trigger's target again, in batches of BatchSize, without
    moving its cursors. Each batch is tried once; what failed goes to the dead-letter list: the
    whole batch, or after a partial failure the records from the lowest reported one on."""
    invocations = []
    for start in range(0, len(records), trigger.batch_size):
        batch = records[start : start + trigger.batch_size]
        started_at = timezone.now()
        result = target_invoke(
            trigger=trigger, payload=event_payload([record_event_json(record) for record in batch]),
            request_id=str(uuid.uuid4()),
        )
        # Tried once: a throttled call counts as the function error it leaves the batch with.
        outcome = Outcome.FUNCTION_ERROR if result.outcome == Outcome.THROTTLED else result.outcome
        failed = batch
        if outcome == Outcome.SUCCESS and trigger.report_batch_item_failures:
            # Read as a cursor's batch is: a malformed response fails the whole batch, and a
            # partial failure gives up on the lowest reported record and those after it.
            report = batch_item_failures(response=result.response, records=batch)
            if report.problem:
                outcome, result = Outcome.FUNCTION_ERROR, result_malformed(result, report)
            elif report.failed_from is not None:
                outcome, failed = Outcome.PARTIAL_FAILURE, batch[report.failed_from:]
        cursor = TriggerCursor(trigger=trigger, shard_id=batch[0].shard_id, lane=0)
        with transaction.atomic():
            invocation = invocation_save(
                cursor=cursor, batch_records=batch, filtered=0, outcome=outcome, result=result,
                attempt=0, from_bisect=False, started_at=started_at, replay=True,
            )
            if outcome != Outcome.SUCCESS:
                dead_letter_save(cursor=cursor, records=failed, invocation=invocation, reason=f"Replay failed: {outcome}")
        invocations.append(invocation)
    return invocations


def records_replay_between(*, trigger: Trigger, start: datetime, end: datetime) -> list[Invocation]:
    """Replay the records of the trigger's source whose ApproximateCreationDateTime is between
    `start` and `end` (both included), shard by shard in sequence order."""
    records = list(
        ChangeRecord.objects.filter(
            source_id=trigger.source_id, approximate_creation_time__gte=start, approximate_creation_time__lte=end
        )
        .select_related("source", "shard__stream")
        .order_by("shard_id", "sequence_key")
    )
    return records_replay(trigger=trigger, records=records)


def dead_letter_retry(*, letter: DeadLetter) -> list[Invocation]:
    """Send a dead-letter entry's records again; marks the entry retried."""
    by_id = {record.pk: record for record in ChangeRecord.objects.filter(pk__in=letter.record_ids).select_related("source", "shard__stream")}
    records = [by_id[pk] for pk in letter.record_ids if pk in by_id]
    invocations = records_replay(trigger=letter.trigger, records=records) if records else []
    DeadLetter.objects.filter(pk=letter.pk).update(retried_at=timezone.now())
    return invocations


def pattern_try(*, trigger: Trigger, last: int = 100, masking: Masking = NO_MASKING,
                match_stored: bool = False) -> tuple[int, list[ChangeRecord]]:
    """The trigger's filter patterns against its source's newest `last` records: how many were
    tried, and which would be sent, as `masking` shows them. The patterns see the records as
    shown too, so which records match never tells a viewer a masked value (the trigger itself
    matches the stored ones, and may send more); with `match_stored` (for a viewer who may see
    data unmasked) they see the stored values, as the trigger does."""
    patterns = patterns_compile(tuple(trigger.filter_patterns))
    stored = list(
        ChangeRecord.objects.filter(source_id=trigger.source_id).select_related("source", "shard__stream").order_by("-id")[:last]
    )
    shown = [masking.record_mask(record) for record in stored]
    tested = stored if match_stored else shown
    return len(stored), [
        record for record, test in zip(shown, tested)
        if not patterns or any(pattern.matches(lambda_record(test)) for pattern in patterns)
    ]


class CursorActionRefused(Exception):
    """An operator action on a cursor that cannot be done now; the message says why."""


# The cursor was reset from the admin while the operator held it (a reset ends the lease):
# what the action wrote is rolled back.
_LEASE_LOST = "The cursor was reset meanwhile; look at it again."


def _cursor_hold(*, cursor_id: int, now) -> tuple[TriggerCursor, str]:
    # A runner holds the cursor while it sends a batch; an operator's move must not race it,
    # so it takes the lease like a runner and gives it back after.
    owner = TriggerCursor.objects.lease_take(cursor_id, now=now, until=now + timedelta(seconds=30))
    if owner is None:
        raise CursorActionRefused("A runner is sending this cursor's batch right now; try again in a few seconds.")
    return TriggerCursor.objects.select_related("trigger__source", "shard__stream").get(pk=cursor_id), owner


def cursor_batch_skip(*, cursor_id: int, who: str, now=None) -> DeadLetter:
    """Give up on the batch a cursor is retrying (workers.selectors.cursor_failing_batch: the
    batch its runner sends next, never a replay's): its records go to the dead-letter list (and
    the trigger's SQS/SNS destination), and the cursor moves past them with its retries
    cleared, as when MaximumRetryAttempts runs out. CursorActionRefused when a runner holds the
    cursor or it has no failed batch ahead of it."""
    now = now or timezone.now()
    cursor, owner = _cursor_hold(cursor_id=cursor_id, now=now)
    try:
        invocation, records = cursor_failing_batch(cursor=cursor)
        if not records:
            raise CursorActionRefused("This cursor has no failed batch waiting: nothing to skip.")
        last = records[-1].sequence_key
        end = cursor.bisect_end if cursor.bisect_end > last else ""
        with transaction.atomic():
            # dead_letter_save counts shardwatch_trigger_dead_letters_total (and its records) on commit, as the runner's do.
            letter = dead_letter_save(
                cursor=cursor, records=records, invocation=invocation,
                reason=f"Skipped by {who} after {cursor.attempt} retries: {invocation_failure(invocation)}",
            )
            moved = TriggerCursor.objects.lease_write(
                cursor_id, owner=owner, position=last, attempt=0, next_attempt_at=None,
                batch_limit=cursor.batch_limit if end else 0, bisect_end=end,
                pending_since=pending_since_next(source=cursor.trigger.source, position=last),
            )
            if moved != 1:
                raise CursorActionRefused(_LEASE_LOST)
        return letter
    finally:
        TriggerCursor.objects.lease_release(cursor_id, owner=owner)


def cursor_batch_bisect(*, cursor_id: int, now=None) -> int:
    """Split the batch a cursor is retrying (as cursor_batch_skip) in two, as
    BisectBatchOnFunctionError does: the next batch is its first half, then its second, each
    retried on its own; the retry count starts again, and shardwatch_trigger_bisects_total
    counts it on commit, as the runner's bisects. Returns the size of the next batch.
    CursorActionRefused when a runner holds the cursor, it has no failed batch, or the batch
    is one record (skip it instead)."""
    now = now or timezone.now()
    cursor, owner = _cursor_hold(cursor_id=cursor_id, now=now)
    try:
        _, records = cursor_failing_batch(cursor=cursor)
        if not records:
            raise CursorActionRefused("This cursor has no failed batch waiting: nothing to bisect.")
        if len(records) == 1:
            raise CursorActionRefused("The batch is a single record: it cannot be split; skip it instead.")
        half = len(records) // 2
        with transaction.atomic():
            moved = TriggerCursor.objects.lease_write(
                cursor_id, owner=owner, batch_limit=half, bisect_end=records[-1].sequence_key, attempt=0,
                next_attempt_at=None,
            )
            if moved != 1:
                raise CursorActionRefused(_LEASE_LOST)
            trigger_meter_count(trigger_id=cursor.trigger_id, name="shardwatch_trigger_bisects_total")
        return half
    finally:
        TriggerCursor.objects.lease_release(cursor_id, owner=owner)

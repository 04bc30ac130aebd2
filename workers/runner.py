"""Running triggers: batches of persisted records sent to a target with Lambda's semantics.

What must stay true (Lambda developer guide, "Using AWS Lambda with Amazon DynamoDB"):
- Per shard, records go out in order, one batch in flight per cursor (workers.cursors: lanes,
  leases, parents before children).
- Delivery is at least once: a cursor moves only after its batch is settled.
- A function error retries the batch until MaximumRetryAttempts, with backoff; bisecting does
  not count as a retry; what is given up on goes to the dead-letter list and the cursor moves
  on, so a poison record never blocks another shard or trigger.
- A throttled call never reached the function: it is retried without counting an attempt.
"""

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from meters.logcontext import log_context
from streams.backoff import backoff_delay
from workers.batches import ReadAhead, batch_take, patterns_compile
from workers.cursors import lease_duration, pending_since_next
from workers.invocations import (
    dead_letter_save,
    invocation_failure,
    invocation_link,
    invocation_save,
    trigger_meter_count,
)
from workers.models import Outcome, Trigger, TriggerCursor
from workers.responses import batch_item_failures, result_malformed
from workers.targets import target_invoke
from workers.timeline import invocations_publish

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


def retry_delay(attempt: int) -> timedelta:
    """How long a cursor waits before retry number `attempt` of its batch."""
    return timedelta(seconds=backoff_delay(attempt=attempt, base_s=1.0, cap_s=MAX_BACKOFF_S, doublings=8, low_s=0.5))


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

    def log_context(self):
        """What this runner's log lines are about (meters.logcontext): its trigger, and the
        source and shard of its cursor."""
        return log_context(source=self.trigger.source_id, shard=self.cursor.shard.shard_id, trigger=self.trigger.pk)

    def _trigger_use(self, trigger: Trigger) -> None:
        self.trigger = trigger
        self.patterns = patterns_compile(tuple(trigger.filter_patterns))
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
        fields.setdefault("lease_expires_at", timezone.now() + lease_duration(self.trigger))
        written = dict(fields)
        if "position" in fields:
            written["pending_since"] = pending_since_next(source=self.trigger.source, position=fields["position"])
        if not TriggerCursor.objects.lease_write(self.cursor.pk, owner=self.owner, **written):
            self.lost = True
            return False
        for name, value in fields.items():
            setattr(self.cursor, name, value)
        return True

    def step(self) -> bool:
        """Send the next batch and settle it. Returns whether more work is ready now."""
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
                    invocation = invocation_save(
                        cursor=cursor, batch_records=stale, filtered=0, outcome=Outcome.DISCARDED,
                        attempt=cursor.attempt, from_bisect=False, started_at=now, announce=self.unpublished.append,
                        error=f"Older than MaximumRecordAgeInSeconds ({trigger.maximum_record_age_s} s).",
                    )
                    dead_letter_save(cursor=cursor, records=stale, invocation=invocation, reason=invocation.error_message)
                    return self.settle(position=stale[-1].sequence_key, attempt=0)

        from_bisect = bool(cursor.batch_limit)
        # Before a handler that may take long, so the timeline never waits for it.
        self.publish(due_only=True)
        started_at = timezone.now()
        # The lease must outlast the invocation, so a slow handler is never taken over while it
        # runs. Each settle extends it; it is renewed here only when that was long ago.
        renew_below = timedelta(seconds=trigger.timeout_s + settings.SHARDWATCH_TRIGGER_LEASE_S / 2)
        if cursor.lease_expires_at is None or cursor.lease_expires_at - started_at < renew_below:
            if not self.settle(lease_expires_at=started_at + lease_duration(trigger)):
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
            if result.outcome == Outcome.THROTTLED:
                # Never reached the function: retried regardless of MaximumRetryAttempts.
                invocation_save(outcome=Outcome.FUNCTION_ERROR, **common)
                if self.settle(next_attempt_at=timezone.now() + retry_delay(1)):
                    self._count("shardwatch_trigger_retries_total")
                return False
            failed_from = None
            outcome = result.outcome
            if outcome == Outcome.SUCCESS and trigger.report_batch_item_failures:
                report = batch_item_failures(response=result.response, records=records)
                failed_from = report.failed_from
                if report.problem:
                    outcome = Outcome.FUNCTION_ERROR
                    common["result"] = result_malformed(result, report)
            if outcome == Outcome.SUCCESS and failed_from is None:
                invocation_save(outcome=Outcome.SUCCESS, **common)
                # The other half of a split batch still goes out as a bisected batch.
                split_left = bool(cursor.bisect_end) and batch.through < cursor.bisect_end
                return self.settle(position=batch.through, attempt=0, filtered_total=filtered_total,
                                   next_attempt_at=None, batch_limit=cursor.batch_limit if split_left else 0,
                                   bisect_end=cursor.bisect_end if split_left else "")
            if outcome == Outcome.SUCCESS:
                # Checkpoint just before the lowest failed record; retry from it.
                invocation = invocation_save(outcome=Outcome.PARTIAL_FAILURE, **common)
                position = records[failed_from - 1].sequence_key if failed_from else cursor.position
                return self._retry_or_give_up(invocation=invocation, records=records[failed_from:],
                                              position=position, filtered_total=filtered_total)
            invocation = invocation_save(
                outcome=Outcome.TIMEOUT if outcome == Outcome.TIMEOUT else Outcome.FUNCTION_ERROR, **common
            )
            if trigger.bisect_batch_on_function_error and len(records) > 1:
                # Splitting does not count towards the retry quota.
                settled = self.settle(batch_limit=max(1, len(records) // 2), bisect_end=records[-1].sequence_key,
                                      next_attempt_at=None)
                if settled:
                    self._count("shardwatch_trigger_bisects_total")
                return settled
            return self._retry_or_give_up(invocation=invocation, records=records, position=cursor.position,
                                          filtered_total=cursor.filtered_total)

    def _retry_or_give_up(self, *, invocation, records, position, filtered_total) -> bool:
        cursor, trigger = self.cursor, self.trigger
        attempt = cursor.attempt + 1
        if trigger.maximum_retry_attempts != -1 and attempt > trigger.maximum_retry_attempts:
            # The reason reaches the SQS/SNS destination and the log: the error type, not the message.
            reason = f"Retries exhausted after {cursor.attempt + 1} attempt(s): {invocation_failure(invocation)}"
            dead_letter_save(cursor=cursor, records=records, invocation=invocation, reason=reason)
            log.warning("trigger %s: %d record(s) went to the dead-letter list. %s. The last invocation: %s",
                        trigger.name, len(records), reason, invocation_link(invocation_id=invocation.pk))
            end = cursor.bisect_end if cursor.bisect_end > records[-1].sequence_key else ""
            return self.settle(position=records[-1].sequence_key, attempt=0, filtered_total=filtered_total,
                               next_attempt_at=None, batch_limit=cursor.batch_limit if end else 0, bisect_end=end)
        if self.settle(position=position, attempt=attempt, filtered_total=filtered_total,
                       next_attempt_at=timezone.now() + retry_delay(attempt)):
            self._count("shardwatch_trigger_retries_total")
        return False

    def _count(self, name: str) -> None:
        trigger_meter_count(trigger_id=self.trigger.pk, name=name)


def cursor_process(*, cursor_id: int, owner: str) -> bool:
    """Send the next batch of one cursor and settle it. Returns whether more work is ready now."""
    runner = CursorRunner(cursor_id=cursor_id, owner=owner)
    try:
        with runner.log_context():
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
        with runner.log_context():
            while True:
                steps += 1
                if not runner.step() or (deadline is not None and time.monotonic() > deadline):
                    break
    finally:
        TriggerCursor.objects.lease_release(cursor_id, owner=owner)
        if runner is not None:
            runner.publish()
    return steps


"""Keeping what a trigger did: an Invocation per batch sent, a DeadLetter per batch given up on.

Both are written inside the caller's transaction, with the cursor move they go with, and what
follows from them waits for that transaction to commit: the timeline hears of an invocation,
and the trigger's SQS/SNS destination of a dead letter, only once it is really there.
"""

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from meters.store import meter_count, meter_observe
from streams.codec import nul_escape
from workers.destinations import destination_notify
from workers.models import DeadLetter, Invocation, Outcome
from workers.timeline import invocation_row, invocations_publish


def invocation_save(*, cursor, batch_records, filtered, outcome, result=None, attempt, from_bisect, started_at,
                    error="", announce=None, replay=False) -> Invocation:
    """Save the invocation of `batch_records` (anything with `pk` and `sequence_number`, in the
    order sent) from `cursor`'s trigger, shard and lane. `result` is the target's InvokeResult,
    or None for a batch that never went out (then `error` says why). `replay` marks a batch an
    operator sent again beside the cursors (workers.operations), which no cursor's batch is.
    Once committed, its timeline row goes to `announce` (by default, it is published at once)."""
    invocation = Invocation.objects.create(
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
        replay=replay,
        started_at=started_at,
        duration_ms=result.duration_ms if result else 0.0,
        outcome=outcome,
        # A handler's text may hold NUL (an item's value echoed back), which PostgreSQL's text
        # columns refuse; an invocation that cannot be saved would be retried forever.
        error_type=nul_escape(text=result.error_type if result else "")[:255],
        error_message=nul_escape(text=result.error_message if result else error)[:10000],
        response_body=nul_escape(text=result.body if result else "")[:65536],
    )
    row = invocation_row(invocation)
    transaction.on_commit(lambda: announce(row) if announce else invocations_publish([row]))
    transaction.on_commit(lambda: _invocation_count(invocation=invocation, result=result))
    return invocation


def _invocation_count(*, invocation: Invocation, result) -> None:
    labels = {"trigger": invocation.trigger_id}
    # A throttled call is stored as a function error; the metric keeps what Lambda answered.
    outcome = result.outcome if result is not None and result.outcome == Outcome.THROTTLED else invocation.outcome
    meter_count(name="shardwatch_trigger_invocations_total", labels={**labels, "outcome": outcome})
    if invocation.filtered_count:
        meter_count(name="shardwatch_trigger_records_filtered_total", labels=labels, value=invocation.filtered_count)
    if result is not None:
        meter_count(name="shardwatch_trigger_records_sent_total", labels=labels, value=invocation.record_count)
        meter_observe(name="shardwatch_trigger_batch_duration_seconds", labels=labels, value=result.duration_ms / 1000)


def invocation_failure(invocation: Invocation) -> str:
    """How an invocation failed, in words fit for logs, notifications and dead-letter reasons:
    its error type (else its outcome), never its error message, which handlers fill with item
    data. The message stays on the invocation's page, behind the login (invocation_link)."""
    return invocation.error_type or invocation.outcome


def invocation_link(*, invocation_id: int) -> str:
    """The absolute URL of an invocation's page (SHARDWATCH_PUBLIC_URL and the URL named
    dashboard:invocation; a name, not an import, so the layers still point down)."""
    return settings.SHARDWATCH_PUBLIC_URL + reverse("dashboard:invocation", args=[invocation_id])


def trigger_meter_count(*, trigger_id: int, name: str) -> None:
    """Count one of a trigger's meters (shardwatch_trigger_retries_total, ..._bisects_total)
    once the transaction at hand commits, so a move that is rolled back counts nothing; the
    runner's and an operator's moves count alike."""
    transaction.on_commit(lambda: meter_count(name=name, labels={"trigger": trigger_id}))


def dead_letter_save(*, cursor, records, invocation, reason: str) -> DeadLetter:
    """Give up on records: keep them in the dead-letter list, and tell the trigger's SQS/SNS
    destination (metadata only, as Lambda does: the records stay here)."""
    letter = DeadLetter.objects.create(
        trigger_id=cursor.trigger_id,
        shard_id=cursor.shard_id,
        invocation=invocation,
        first_sequence_number=records[0].sequence_number,
        last_sequence_number=records[-1].sequence_number,
        record_ids=[record.pk for record in records],
        reason=nul_escape(text=reason),
    )
    transaction.on_commit(lambda: destination_notify(letter_id=letter.pk))
    labels = {"trigger": cursor.trigger_id}
    # One dead letter is one batch, however many records it holds: both are counted.
    transaction.on_commit(lambda: meter_count(name="shardwatch_trigger_dead_letters_total", labels=labels))
    transaction.on_commit(
        lambda: meter_count(name="shardwatch_trigger_dead_letter_records_total", labels=labels, value=len(records))
    )
    return letter

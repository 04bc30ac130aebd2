"""Celery tasks: thin adapters that take ids and call one function each."""

import logging
from datetime import datetime

from celery import shared_task
from django.db import close_old_connections, transaction

from streams import reading, retention, sources
from streams.models import StreamSource
from workers import retention as invocation_retention
from workers.cursors import cursors_claim, cursors_ensure
from workers.models import DeadLetter, Trigger
from workers.operations import dead_letter_retry, records_replay_between
from workers.runner import cursor_run

TRIGGER_RUN_BUDGET_S = 20.0

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def discover_source(source_id: int) -> None:
    try:
        sources.source_discover(source_id=source_id)
    except StreamSource.DoesNotExist:
        return


@shared_task(ignore_result=True)
def discover_all() -> None:
    for source_id in StreamSource.objects.filter(enabled=True).values_list("pk", flat=True):
        discover_source.delay(source_id)


@shared_task(ignore_result=True)
def dispatch_readers() -> None:
    """Start a reader for every readable shard whose lease is free or expired."""
    with transaction.atomic():
        claimed = reading.shards_claim()
        for shard_id, owner in claimed:
            transaction.on_commit(lambda s=shard_id, o=owner: read_shard.delay(s, o))


@shared_task(ignore_result=True)
def read_shard(shard_id: int, owner: str, poll_no: int = 0, iterator: str | None = None, error_count: int = 0) -> None:
    """One poll of one shard, then the next poll scheduled as a new task.

    Each poll is its own short task, so no task runs for long and any worker process can
    take the next one. The lease owner token travels with the chain: a chain whose lease was
    taken over ends at its next poll.
    """
    close_old_connections()
    poll = reading.shard_poll(
        shard_id=shard_id, owner=owner, poll_no=poll_no, iterator=iterator, error_count=error_count
    )
    if poll.keep_reading:
        read_shard.apply_async(
            (shard_id, owner, poll_no + 1, poll.iterator, poll.error_count),
            countdown=poll.delay_s if poll.delay_s > 0 else None,
        )


@shared_task(ignore_result=True)
def enforce_retention() -> None:
    retention.records_expire()
    invocation_retention.invocations_expire()


@shared_task(ignore_result=True)
def dispatch_triggers(source_id: int | None = None) -> None:
    """Start a runner for every trigger cursor with work that nobody holds."""
    triggers = Trigger.objects.filter(enabled=True)
    if source_id is not None:
        triggers = triggers.filter(source_id=source_id)
    for trigger in triggers:
        cursors_ensure(trigger=trigger)
        with transaction.atomic():
            for cursor_id, owner in cursors_claim(trigger_id=trigger.pk):
                transaction.on_commit(lambda c=cursor_id, o=owner: run_trigger_cursor.delay(c, o))


@shared_task(ignore_result=True)
def run_trigger_cursor(cursor_id: int, owner: str) -> None:
    """Batches of one cursor until it has nothing ready or a short time budget is spent, so
    one busy trigger never holds a worker for long."""
    close_old_connections()
    cursor_run(cursor_id=cursor_id, owner=owner, budget_s=TRIGGER_RUN_BUDGET_S)


@shared_task(ignore_result=True)
def replay_records(trigger_id: int, start: str, end: str) -> None:
    """Replay what the trigger's source saved between two ISO 8601 times."""
    trigger = Trigger.objects.get(pk=trigger_id)
    records_replay_between(trigger=trigger, start=datetime.fromisoformat(start), end=datetime.fromisoformat(end))


@shared_task(ignore_result=True)
def retry_dead_letter(letter_id: int) -> None:
    dead_letter_retry(letter=DeadLetter.objects.select_related("trigger").get(pk=letter_id))

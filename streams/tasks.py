"""Celery tasks of the stream readers: thin adapters that take ids and call one function each.

The registered names are the ones these tasks had when they lived in workers/tasks.py
(`name="workers.tasks.read_shard"` and so on): messages already queued during a deploy, and
the beat schedule in config/settings.py, still find them.
"""

from celery import shared_task
from django.db import close_old_connections, transaction

from streams import reading, retention, sources
from streams.models import ChangeRecord, StreamSource
from streams.signals import records_expired


@shared_task(ignore_result=True, name="workers.tasks.discover_source")
def discover_source(source_id: int) -> None:
    try:
        sources.source_discover(source_id=source_id)
    except StreamSource.DoesNotExist:
        return


@shared_task(ignore_result=True, name="workers.tasks.discover_all")
def discover_all() -> None:
    for source_id in StreamSource.objects.filter(enabled=True).values_list("pk", flat=True):
        discover_source.delay(source_id)


@shared_task(ignore_result=True, name="workers.tasks.dispatch_readers")
def dispatch_readers() -> None:
    """Start a reader for every readable shard whose lease is free or expired."""
    with transaction.atomic():
        claimed = reading.shards_claim()
        for shard_id, owner in claimed:
            transaction.on_commit(lambda s=shard_id, o=owner: read_shard.delay(s, o))


@shared_task(ignore_result=True, name="workers.tasks.read_shard")
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
    if poll.rediscover is not None:
        # A shard read to its end usually has children waiting to be found.
        transaction.on_commit(lambda: discover_source.delay(poll.rediscover))
    if poll.keep_reading:
        read_shard.apply_async(
            (shard_id, owner, poll_no + 1, poll.iterator, poll.error_count),
            countdown=poll.delay_s if poll.delay_s > 0 else None,
        )


@shared_task(ignore_result=True, name="workers.tasks.enforce_retention")
def enforce_retention() -> None:
    """Delete records past their source's retention, then let the apps above delete what was
    built on them (streams.signals.records_expired; workers deletes trigger invocations)."""
    retention.records_expire()
    records_expired.send(sender=ChangeRecord)

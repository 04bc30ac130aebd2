"""Reading one shard: leases, GetRecords, and saving each batch with its checkpoint.

What must stay true:
- At most one reader advances a shard. Every write that moves a shard forward is conditional
  on the reader still holding the lease, so a reader that lost its lease changes nothing.
- A batch of records and the checkpoint after it are committed in one transaction. A crash
  at any point leaves either both or neither; records read twice are ignored by the unique
  (shard, sequence_key) key.
"""

import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from streams import aws
from streams.ingest import records_save
from streams.models import Gap, Shard, StreamSource
from streams.sources import source_set_status, stream_mark_gone

log = logging.getLogger(__name__)

GET_RECORDS_LIMIT = 1000
# DynamoDB allows 5 GetRecords a second on a shard; never poll faster than this.
MIN_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Poll:
    """What a reader should do next."""

    keep_reading: bool
    delay_s: float = 0.0
    iterator: str | None = None
    saved: int = 0
    error_count: int = 0


STOP = Poll(keep_reading=False)


def lease_owner_new() -> str:
    return uuid.uuid4().hex


def shards_claim(*, limit: int = 500) -> list[tuple[int, str]]:
    """Lease every readable shard nobody holds. Returns (shard_id, owner) pairs to start
    readers for; the caller starts them after commit."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.SHARDWATCH_LEASE_S)
    claimed = []
    for shard_pk in Shard.objects.readable().unleased(now=now).values_list("pk", flat=True)[:limit]:
        owner = lease_owner_new()
        # Conditional on still being free: two dispatchers may race for the same shard.
        won = (
            Shard.objects.filter(pk=shard_pk)
            .unleased(now=now)
            .update(lease_owner=owner, lease_expires_at=until, lease_poll=0)
        )
        if won == 1:
            claimed.append((shard_pk, owner))
    return claimed


def lease_release(*, shard_id: int, owner: str) -> None:
    Shard.objects.filter(pk=shard_id, lease_owner=owner).update(lease_owner="", lease_expires_at=None)


def _backoff(error_count: int) -> float:
    # Full jitter: readers that failed together must not retry together.
    ceiling = min(settings.SHARDWATCH_MAX_BACKOFF_S, 0.5 * 2 ** min(error_count, 10))
    return max(MIN_INTERVAL_S, random.uniform(0, ceiling))


# Shard iterators expire 15 minutes after they are issued; keep a margin for clock skew.
ITERATOR_LIFETIME = timedelta(minutes=14)


def _iterator_for(client, shard: Shard, *, now) -> str | None:
    if shard.checkpoint:
        kwargs = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.checkpoint}
    elif shard.initial_position == "LATEST":
        if shard.resume_iterator and now - shard.resume_iterator_at < ITERATOR_LIFETIME:
            return shard.resume_iterator
        if shard.resume_iterator:
            Gap.objects.create(
                source_id=shard.stream.source_id,
                shard=shard,
                reason=(
                    "No reader held this LATEST shard for over 15 minutes before its first record, so "
                    "its position expired; reading resumed at the newest record. Changes in between may be missing."
                ),
            )
        kwargs = {"ShardIteratorType": "LATEST"}
    else:
        kwargs = {"ShardIteratorType": "TRIM_HORIZON"}
    response = client.get_shard_iterator(StreamArn=shard.stream.arn, ShardId=shard.shard_id, **kwargs)
    return response.get("ShardIterator")


def _record_trim_gap(shard: Shard, detail: str) -> None:
    Gap.objects.create(
        source_id=shard.stream.source_id,
        shard=shard,
        after_sequence_number=shard.checkpoint,
        reason=(
            "Records were trimmed by the stream's 24-hour retention before Shardwatch read them "
            f"({detail}); reading resumed at the oldest record still in the shard."
        ),
    )


def shard_poll(*, shard_id: int, owner: str, poll_no: int = 0, iterator: str | None = None, error_count: int = 0) -> Poll:
    """One GetRecords call on a shard we hold the lease for, and the batch saved.

    Returns when to poll next and with which iterator; STOP when the lease is gone, the
    shard is finished or the source is disabled.
    """
    started = time.monotonic()
    now = timezone.now()
    renewed = Shard.objects.filter(pk=shard_id, lease_owner=owner, lease_poll=poll_no).update(
        lease_poll=poll_no + 1,
        lease_expires_at=now + timedelta(seconds=settings.SHARDWATCH_LEASE_S),
        last_polled_at=now,
        last_polled_by=f"{socket.gethostname()}:{os.getpid()}",
    )
    if renewed != 1:
        return STOP
    shard = Shard.objects.select_related("stream__source").get(pk=shard_id)
    source = shard.stream.source
    if not source.enabled or shard.state == Shard.State.FINISHED:
        lease_release(shard_id=shard_id, owner=owner)
        return STOP

    client = aws.streams_client(region=source.region, endpoint_url=source.endpoint_url)
    try:
        if iterator is None:
            iterator = _iterator_for(client, shard, now=now)
        # No iterator means a closed shard with nothing left to read in it.
        response = client.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT) if iterator else {}
    except aws.AWS_ERRORS as exc:
        return _after_error(shard=shard, owner=owner, exc=exc, error_count=error_count)

    records = response.get("Records", [])
    next_iterator = response.get("NextShardIterator")
    saved = records_save(shard=shard, owner=owner, records=records, finished=next_iterator is None)
    if saved is None:
        return STOP  # the lease moved to another reader while we were reading
    if error_count:
        Shard.objects.filter(pk=shard_id).update(error_count=0, last_error="")
        source_set_status(source_id=source.pk, status=StreamSource.Status.ACTIVE)
    if not records and next_iterator and not shard.checkpoint and shard.initial_position == "LATEST":
        Shard.objects.filter(pk=shard_id, lease_owner=owner).update(resume_iterator=next_iterator, resume_iterator_at=now)
    if next_iterator is None:
        lease_release(shard_id=shard_id, owner=owner)
        _enqueue_discovery_after_commit(source.pk)
        return Poll(keep_reading=False, saved=saved)

    elapsed = time.monotonic() - started
    if len(records) >= GET_RECORDS_LIMIT:
        interval = MIN_INTERVAL_S
    elif records or _recently_active(shard, now):
        interval = settings.SHARDWATCH_POLL_INTERVAL_S
    else:
        interval = settings.SHARDWATCH_IDLE_POLL_INTERVAL_S
    return Poll(keep_reading=True, delay_s=max(0.0, interval - elapsed), iterator=next_iterator, saved=saved)


def _recently_active(shard: Shard, now) -> bool:
    if shard.last_record_at is None:
        return False
    return (now - shard.last_record_at).total_seconds() < settings.SHARDWATCH_IDLE_AFTER_S


def _after_error(*, shard: Shard, owner: str, exc: Exception, error_count: int) -> Poll:
    failure = aws.classify(exc)
    message = aws.describe(exc)
    source_id = shard.stream.source_id
    if failure is aws.Failure.EXPIRED_ITERATOR:
        # Iterators live 15 minutes; a fresh one from the checkpoint loses nothing.
        return Poll(keep_reading=True, delay_s=0.0, iterator=None, error_count=error_count)
    if failure is aws.Failure.TRIMMED:
        _record_trim_gap(shard, message)
        Shard.objects.filter(pk=shard.pk, lease_owner=owner).update(checkpoint="", initial_position="TRIM_HORIZON")
        return Poll(keep_reading=True, delay_s=0.0, iterator=None, error_count=error_count)
    if failure is aws.Failure.NOT_FOUND:
        stream_mark_gone(stream_id=shard.stream_id, reason=f"Stream or shard gone: {message}")
        return STOP
    error_count += 1
    Shard.objects.filter(pk=shard.pk).update(error_count=error_count, last_error=message[:4000])
    if failure is aws.Failure.THROTTLED:
        log.info("shard %s throttled: %s", shard.shard_id, message)
    else:
        status = {
            aws.Failure.UNREACHABLE: StreamSource.Status.UNREACHABLE,
        }.get(failure, StreamSource.Status.ERROR)
        source_set_status(source_id=source_id, status=status, error=f"Reading shard {shard.shard_id}: {message}")
        log.warning("shard %s: %s", shard.shard_id, message)
    return Poll(keep_reading=True, delay_s=_backoff(error_count), iterator=None, error_count=error_count)


def _enqueue_discovery_after_commit(source_id: int) -> None:
    # A shard read to its end usually has children waiting to be found.
    from workers.tasks import discover_source

    transaction.on_commit(lambda: discover_source.delay(source_id))

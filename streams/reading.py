"""Reading one shard: GetShardIterator and GetRecords (shard_fetch, on any thread), and acting
on what came back (shard_apply, on the reader's thread): saving each batch with its checkpoint,
errors, gaps. streams/reader.py holds many shards and calls these.

What must stay true:
- At most one reader advances a shard. Every write that moves a shard forward is conditional
  on the reader still holding the lease, so a reader that lost its lease changes nothing.
- A batch of records and the checkpoint after it are committed in one transaction. A crash
  at any point leaves either both or neither; records read twice are ignored by the unique
  (shard, sequence_key) key.
- A gap is a claim that records Shardwatch owed were lost. It is made only on evidence that
  they were (see trim_loss_find); every other failed read is retried, from a position that
  skips nothing.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from meters.store import meter_count, meter_observe
from streams import aws
from streams.backoff import backoff_delay
from streams.ingest import records_save
from streams.models import ChangeRecord, Gap, Shard, StreamSource, sequence_key
from streams.sources import source_set_status, stream_mark_gone

log = logging.getLogger(__name__)

GET_RECORDS_LIMIT = 1000
# Never more than 5 GetRecords a second on a shard. The DynamoDB Streams documentation gives no
# per-shard call rate, only "no more than two processes" reading a shard at once (developer
# guide, Streams); 5 a second is Kinesis Data Streams' GetRecords quota per shard, the service
# DynamoDB Streams' API follows, and Lambda polls a stream shard 4 times a second.
MIN_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Poll:
    """What a reader should do next."""

    keep_reading: bool
    delay_s: float = 0.0
    iterator: str | None = None
    saved: int = 0
    error_count: int = 0
    # A source whose shard was just read to its end: its children may be waiting to be found,
    # so the caller looks for them now (streams.tasks.discover_children) rather than waiting
    # for the next periodic discovery.
    rediscover: int | None = None


STOP = Poll(keep_reading=False)


def _backoff(error_count: int) -> float:
    # Never below MIN_INTERVAL_S: a retry is a GetRecords call too.
    return max(MIN_INTERVAL_S, backoff_delay(
        attempt=error_count, base_s=0.5, cap_s=settings.SHARDWATCH_MAX_BACKOFF_S, doublings=10
    ))


# Shard iterators expire 15 minutes after they are issued; keep a margin for clock skew.
ITERATOR_LIFETIME = timedelta(minutes=14)


def _iterator_for(client, shard: Shard, *, now) -> tuple[str | None, bool]:
    """A shard iterator for where `shard` should be read from, and whether a LATEST shard's
    kept position had expired (so reading restarts at the newest record)."""
    restarted_latest = False
    if shard.checkpoint:
        kwargs = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.checkpoint}
    elif shard.initial_position == "LATEST":
        if shard.resume_iterator and now - shard.resume_iterator_at < ITERATOR_LIFETIME:
            return shard.resume_iterator, False
        restarted_latest = bool(shard.resume_iterator)
        kwargs = {"ShardIteratorType": "LATEST"}
    else:
        kwargs = {"ShardIteratorType": "TRIM_HORIZON"}
    response = client.get_shard_iterator(StreamArn=shard.stream.arn, ShardId=shard.shard_id, **kwargs)
    return response.get("ShardIterator"), restarted_latest


# DynamoDB Streams keeps each record for 24 hours: "Stream records whose age exceeds this limit
# are subject to removal (trimming)" (API reference, DynamoDB Streams, TrimmedDataAccessException;
# the developer guide's Streams page: records "are removed automatically after 24 hours").
# Records younger than that cannot have been trimmed.
STREAM_RETENTION = timedelta(hours=24)
# A record's ApproximateCreationDateTime comes from DynamoDB's clock and is rounded down to the
# second, so it can only look older; our clock may lag DynamoDB's. Within this allowance of the
# retention a record counts as old enough to have been trimmed: a needless gap is a false alarm,
# a missing one hides a loss.
CLOCK_ALLOWANCE = timedelta(hours=1)


@dataclass(frozen=True)
class TrimLoss:
    """Records that a trimmed read lost, as a gap states them."""

    after_sequence_number: str
    reason: str


def _written_at(*, shard_id: int, sequence_number: str):
    """When a record we stored was written (its ApproximateCreationDateTime), or None when we
    no longer keep it (Shardwatch's own retention deletes records after a day or more)."""
    try:
        key = sequence_key(sequence_number)
    except ValueError:
        return None
    return (
        ChangeRecord.objects.filter(shard_id=shard_id, sequence_key=key)
        .values_list("approximate_creation_time", flat=True)
        .first()
    )


def _written_text(written_at) -> str:
    return f"written {written_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _ancestor_last_read(shard: Shard) -> tuple[Shard, str, object] | None:
    """The nearest ancestor of `shard` that we read records from, with the sequence number and
    write time of the newest of them (time None when we no longer keep that record)."""
    known = {
        row.shard_id: row
        for row in Shard.objects.filter(stream_id=shard.stream_id).only("id", "shard_id", "parent_shard_id", "checkpoint")
    }
    seen = {shard.shard_id}
    ancestor = known.get(shard.parent_shard_id)
    while ancestor is not None and ancestor.shard_id not in seen:
        seen.add(ancestor.shard_id)
        newest = (
            ChangeRecord.objects.filter(shard_id=ancestor.pk)
            .order_by("-sequence_key")
            .values_list("sequence_number", "approximate_creation_time")
            .first()
        )
        if newest is not None:
            return ancestor, newest[0], newest[1]
        if ancestor.checkpoint:
            return ancestor, ancestor.checkpoint, None
        ancestor = known.get(ancestor.parent_shard_id)
    return None


def trim_loss_find(*, shard: Shard, now, detail: str) -> TrimLoss | None:
    """Whether a TrimmedDataAccessException on `shard` lost records that Shardwatch owed, and
    if so what the gap says; None when nothing owed can have been trimmed.

    AWS raises the error for a position behind the trim point: an AFTER_SEQUENCE_NUMBER (or
    AT_SEQUENCE_NUMBER) iterator whose sequence number is older than 24 hours, or an iterator
    whose record was trimmed before GetRecords used it (API reference, DynamoDB Streams,
    TrimmedDataAccessException). DynamoDB Local also raises it, with nothing trimmed, on every
    iterator at the start of a shard that was empty when the iterator was handed out and has
    records now, whenever another table took sequence numbers in between
    (aws/aws-sdk-java#2923). So the error alone proves nothing. Two things make a gap:

    - The lost records were owed: they follow, in the shard or in a shard descended from it,
      a record that Shardwatch read. Records in front of the first record we read of a
      lineage were never reached: TRIM_HORIZON starts at the oldest record the shard still
      holds, and LATEST after the newest (API reference, DynamoDB Streams, GetShardIterator).
    - They were old enough to be trimmed: everything behind the failing position was written
      after that record, so the gap is claimed only when that record is about as old as the
      retention. Nothing younger can have been trimmed, whatever the error says.

    Where the failing position was follows from what we stored, the same whether
    GetShardIterator or GetRecords raised the error. (The iterator's own age adds nothing: an
    iterator expires 15 minutes after it is handed out, and each NextShardIterator stands
    where the batch before it ended.)

    - With a checkpoint, it is right after the checkpoint record: an AFTER_SEQUENCE_NUMBER
      iterator, or a chain of NextShardIterators that has read records (each batch saves its
      checkpoint before the next iterator is used).
    - Without one, it is the start of the shard (TRIM_HORIZON, or a chain from it that has
      read nothing) or a LATEST position. For a shard with no ancestor we read, nothing
      behind it was owed, and no gap is claimed.
    - A child shard is the rare race on real AWS: its first records are trimmed while
      Shardwatch is still reading its parent (readers start a child only once its parent is
      read to its end, as AWS requires). They follow the parent's last record, which we read,
      so they were owed; the gap is claimed when that record is old enough. Sequence numbers
      are not dense, so comparing the child's StartingSequenceNumber with the first record
      TRIM_HORIZON returns would prove nothing (DynamoDB Local starts shards below their
      first record); time does. A shard whose start we have already read or already reported
      gets no second gap. (A TRIM_HORIZON iterator taken after the trim starts past the lost
      records without any error; nothing then shows that any existed, and no gap is claimed.)
    """
    cutoff = now - (STREAM_RETENTION - CLOCK_ALLOWANCE)
    if shard.checkpoint:
        written_at = _written_at(shard_id=shard.pk, sequence_number=shard.checkpoint)
        if written_at is not None and written_at > cutoff:
            return None
        written = f", {_written_text(written_at)}" if written_at is not None else ""
        return TrimLoss(
            after_sequence_number=shard.checkpoint,
            reason=(
                f"Records after sequence number {shard.checkpoint} (the last record Shardwatch read from this "
                f"shard{written}) were trimmed by the stream's 24-hour retention before Shardwatch read them "
                f"({detail}); reading resumed at the oldest record still in the shard."
            ),
        )
    if not shard.parent_shard_id:
        return None
    if ChangeRecord.objects.filter(shard=shard).exists() or Gap.objects.filter(shard=shard).exists():
        return None
    last_read = _ancestor_last_read(shard)
    if last_read is None:
        return None
    ancestor, sequence_number, written_at = last_read
    if written_at is not None and written_at > cutoff:
        return None
    written = f", {_written_text(written_at)}" if written_at is not None else ""
    return TrimLoss(
        after_sequence_number="",
        reason=(
            f"Records at the start of this shard were trimmed by the stream's 24-hour retention before "
            f"Shardwatch read them ({detail}). They were written after sequence number {sequence_number}, the last "
            f"record Shardwatch read from the shard {ancestor.shard_id} before it{written}; reading resumed at "
            "the oldest record still in the shard."
        ),
    )


@dataclass
class ShardReading:
    """What a reader keeps in memory for one shard it holds.

    `shard` is the row as the reader last read it, with its stream and source loaded; the
    reader reads it again every few seconds and after each write it makes. `iterator` is the
    next shard iterator (None: ask GetShardIterator first); `error_count` counts the reads that
    failed in a row.
    """

    shard: Shard
    iterator: str | None = None
    error_count: int = 0
    # When the latest poll began, if it returned nothing (the shard is caught up: iterator age
    # 0); None after a poll that returned records or failed. Written at lease renewal (streams.lag).
    caught_up_at: datetime | None = None


@dataclass(frozen=True)
class Fetched:
    """What one GetRecords call (and the GetShardIterator before it, if any) brought back."""

    started: float  # time.monotonic() when the call began
    response: dict | None = None
    answered: float | None = None  # time.monotonic() when GetRecords answered
    error: Exception | None = None
    # A LATEST shard whose kept position had expired: reading restarted at the newest record,
    # and the records written in between may be missing (the caller records a gap).
    restarted_latest: bool = False


def shard_fetch(*, shard: Shard, iterator: str | None, now) -> Fetched:
    """GetShardIterator when `iterator` is None, then one GetRecords call. Touches no database
    and no shared state, so readers run it on a thread pool.

    `shard` must have its stream and source loaded. AWS errors are returned in Fetched.error,
    never raised.
    """
    started = time.monotonic()
    source = shard.stream.source
    client = aws.streams_client(region=source.region, endpoint_url=source.endpoint_url)
    restarted_latest = False
    try:
        if iterator is None:
            iterator, restarted_latest = _iterator_for(client, shard, now=now)
        # No iterator means a closed shard with nothing left to read in it.
        response = client.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT) if iterator else {}
    except aws.AWS_ERRORS as exc:
        return Fetched(started=started, error=exc)
    return Fetched(started=started, response=response, restarted_latest=restarted_latest, answered=time.monotonic())


# A LATEST shard that has never returned a record keeps its newest iterator in the database, so
# that a reader taking it over resumes there. Iterators live 15 minutes; keeping it again every
# 10 costs one write per 10 minutes for such a shard, not one per poll.
RESUME_ITERATOR_KEEP_EVERY = timedelta(minutes=10)


def shard_apply(*, reading: ShardReading, owner: str, fetched: Fetched, now) -> Poll:
    """Act on what shard_fetch brought back: save the batch with its checkpoint, record errors
    and gaps, and say when to poll next. Runs on the reader's own thread (it uses the database).

    Updates `reading` (its iterator, error count and, through records_save, its shard's
    checkpoint) and returns the Poll. STOP when the lease is gone; keep_reading False with
    `rediscover` set when the shard was read to its end (its lease is released then).
    An empty batch writes nothing, except a LATEST position kept every RESUME_ITERATOR_KEEP_EVERY.
    """
    shard = reading.shard
    source = shard.stream.source
    reading.caught_up_at = None
    labels = {"source": source.pk}
    meter_count(name="shardwatch_polls_total", labels=labels)
    if fetched.error is not None:
        meter_count(name="shardwatch_poll_errors_total", labels={**labels, "error": aws.error_code(fetched.error)})
        poll = _after_error(shard=shard, owner=owner, exc=fetched.error, error_count=reading.error_count)
        reading.iterator, reading.error_count = poll.iterator, poll.error_count
        return poll
    response = fetched.response
    if fetched.restarted_latest:
        with transaction.atomic():
            # Only while the lease is ours (the row stays locked until the gap is in): a reader
            # that lost the shard meanwhile must not report the new holder's gap too.
            if not Shard.objects.select_for_update().held_by(owner).filter(pk=shard.pk).exists():
                return STOP
            Gap.objects.create(
                source_id=source.pk,
                shard=shard,
                reason=(
                    "No reader held this LATEST shard for over 15 minutes before its first record, so "
                    "its position expired; reading resumed at the newest record. Changes in between may be missing."
                ),
            )
            # Counted once committed, as every gap is (streams.ingest.records_save).
            transaction.on_commit(lambda: meter_count(name="shardwatch_gaps_total", labels={"source": source.pk}), robust=True)
    records = response.get("Records", [])
    next_iterator = response.get("NextShardIterator")
    saved = records_save(shard=shard, owner=owner, records=records, finished=next_iterator is None)
    if saved is None:
        return STOP  # the lease moved to another reader while we were reading
    if saved and fetched.answered is not None:
        # From GetRecords' answer to the batch's commit, observed once it has committed (at
        # once here, outside any transaction; later, or never, inside a caller's).
        answered = fetched.answered
        transaction.on_commit(
            lambda: meter_observe(name="shardwatch_ingest_latency_seconds", labels=labels, value=time.monotonic() - answered),
            robust=True,
        )
    if reading.error_count:
        Shard.objects.filter(pk=shard.pk).update(error_count=0, last_error="")
        source_set_status(source_id=source.pk, status=StreamSource.Status.ACTIVE)
    reading.error_count = 0
    if next_iterator is None:
        Shard.objects.lease_release(shard.pk, owner=owner)
        return Poll(keep_reading=False, saved=saved, rediscover=source.pk)
    if not shard.checkpoint and shard.initial_position == "LATEST" and (
        fetched.restarted_latest or shard.resume_iterator_at is None or now - shard.resume_iterator_at >= RESUME_ITERATOR_KEEP_EVERY
    ):
        if not Shard.objects.lease_write(shard.pk, owner=owner, resume_iterator=next_iterator, resume_iterator_at=now):
            return STOP
        shard.resume_iterator, shard.resume_iterator_at = next_iterator, now
    reading.iterator = next_iterator

    elapsed = time.monotonic() - fetched.started
    if not records:
        # From when the call began: a record written during it may not be in its answer.
        reading.caught_up_at = now - timedelta(seconds=elapsed)
    if len(records) >= GET_RECORDS_LIMIT:
        interval = MIN_INTERVAL_S
    elif records or _recently_active(shard, now):
        interval = settings.SHARDWATCH_POLL_INTERVAL_S
    else:
        interval = settings.SHARDWATCH_IDLE_POLL_INTERVAL_S
    return Poll(keep_reading=True, delay_s=max(0.0, interval - elapsed), iterator=next_iterator, saved=saved)


def shard_poll(*, shard_id: int, owner: str, iterator: str | None = None, error_count: int = 0) -> Poll:
    """One poll of one shard that `owner` holds, fetched and applied on this thread.

    What a reader does for each due shard, for callers that drive one shard at a time (tests,
    management commands). Reads the row first: STOP when the lease is not `owner`'s, and when
    the shard is finished or its source disabled (the lease is released then).
    """
    shard = Shard.objects.select_related("stream__source").get(pk=shard_id)
    if shard.lease_owner != owner:
        return STOP
    if not shard.stream.source.enabled or shard.state == Shard.State.FINISHED:
        Shard.objects.lease_release(shard_id, owner=owner)
        return STOP
    now = timezone.now()
    reading = ShardReading(shard=shard, iterator=iterator, error_count=error_count)
    return shard_apply(reading=reading, owner=owner, fetched=shard_fetch(shard=shard, iterator=iterator, now=now), now=now)


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
        return Poll(keep_reading=True, delay_s=MIN_INTERVAL_S, iterator=None, error_count=error_count)
    if failure is aws.Failure.TRIMMED:
        return _after_trimmed(shard=shard, owner=owner, message=message, error_count=error_count)
    if failure is aws.Failure.NOT_FOUND:
        stream_mark_gone(stream_id=shard.stream_id, reason=f"Stream or shard gone: {message}")
        return STOP
    error_count += 1
    Shard.objects.filter(pk=shard.pk).update(error_count=error_count, last_error=message[:4000])
    if failure is aws.Failure.THROTTLED:
        log.info("shard %s throttled: %s", shard.shard_id, message)
    else:
        status = StreamSource.Status.after_failure(failure)
        source_set_status(source_id=source_id, status=status, error=f"Reading shard {shard.shard_id}: {message}")
        log.warning("shard %s: %s", shard.shard_id, message)
    return Poll(keep_reading=True, delay_s=_backoff(error_count), iterator=None, error_count=error_count)


def _after_trimmed(*, shard: Shard, owner: str, message: str, error_count: int) -> Poll:
    # Either way reading goes on from TRIM_HORIZON, the oldest record still in the shard, which
    # skips nothing that is left; records read again are ignored by the unique (shard,
    # sequence_key) key. For a LATEST shard with no checkpoint that may read records from
    # before the source was added: reading too much loses nothing, while a new LATEST would
    # skip what was written since the failing iterator's position.
    loss = trim_loss_find(shard=shard, now=timezone.now(), detail=message)
    restart = {"checkpoint": "", "initial_position": "TRIM_HORIZON", "resume_iterator": "", "resume_iterator_at": None}
    with transaction.atomic():
        if not Shard.objects.lease_write(shard.pk, owner=owner, **restart):
            return STOP  # the lease moved to another reader; its own reads decide
        # The reader's copy too, or its next GetShardIterator would ask for the trimmed
        # position again, and make the gap again.
        for field, value in restart.items():
            setattr(shard, field, value)
        if loss is not None:
            Gap.objects.create(
                source_id=shard.stream.source_id,
                shard=shard,
                after_sequence_number=loss.after_sequence_number,
                reason=loss.reason,
            )
            source_id = shard.stream.source_id
            transaction.on_commit(lambda: meter_count(name="shardwatch_gaps_total", labels={"source": source_id}), robust=True)
    if loss is not None:
        # The loss is recorded and the next read starts at what is left: no reason to wait
        # longer than DynamoDB's rate allows.
        return Poll(keep_reading=True, delay_s=MIN_INTERVAL_S, iterator=None, error_count=error_count)
    # Nothing owed was lost. The first retry comes at the shortest interval: DynamoDB Local
    # raises this on the first read after a record lands in a shard that was empty
    # (aws/aws-sdk-java#2923), so a jittered wait there would delay that record by up to a
    # second for nothing. Later retries back off, so a read that keeps failing (DynamoDB Local
    # fails again when a record lands between GetShardIterator and GetRecords) never spins; as
    # with throttling, the source stays active and the shard shows why it waits.
    error_count += 1
    Shard.objects.filter(pk=shard.pk).update(
        error_count=error_count,
        last_error=(
            f"{message} No record that Shardwatch owed can have been trimmed here, so nothing was lost; "
            "reading again from the oldest record in the shard."
        )[:4000],
    )
    log.info("shard %s: %s; no records lost, reading again from TRIM_HORIZON", shard.shard_id, message)
    delay_s = MIN_INTERVAL_S if error_count == 1 else _backoff(error_count)
    return Poll(keep_reading=True, delay_s=delay_s, iterator=None, error_count=error_count)

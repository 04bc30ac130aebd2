"""Trigger cursors: where each trigger is in each shard, and who may move it.

A trigger has a cursor per shard of its source and per lane: with a ParallelizationFactor
above 1 a shard has that many lanes, each taking the partition keys that hash to it
(lane_of), so order per key holds while lanes run side by side.

What must stay true (Lambda developer guide, "Using AWS Lambda with Amazon DynamoDB"):
- One batch in flight per cursor: a runner works on a cursor only while it holds the cursor's
  lease (streams.leases), and every change it makes is conditional on still holding it.
- A parent shard is done before its children start: a child's cursors are claimed only once
  every lane of the trigger on the parent has passed the parent's last record.
- A reset ends the lease, so a runner still holding the cursor stops at its next write
  instead of writing its own idea of the position over the reset one.
- `pending_since` is the time of the oldest record past `position` (NULL when there is none),
  in every write that moves `position` (pending_since_next, evaluated by the database in the
  same UPDATE) and set by cursors_pending_mark when a batch is saved. The mark runs after the
  batch has committed, so a runner may read the batch and catch up first: the mark marks only
  cursors that the database finds with a record past their position as it writes (a cursor a
  runner is moving is checked again once the runner's row lock is released), so a caught-up
  cursor is never left marked; and a cursor that the runner's UPDATE left behind the batch
  either kept its mark or gets it. Retention deletes records from under the marks: once it has
  run (streams.signals.records_expired), cursors_pending_recount works each marked cursor's
  mark out again, and clears the marks of cursors with nothing left past their position.
"""

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, Max, OuterRef, Subquery
from django.utils import timezone

from streams.lag import record_times_rounded
from streams.models import ChangeRecord, Shard, StreamSource, sequence_key
from workers.models import Trigger, TriggerCursor


def lane_of(*, partition_key: str, item_key: str, lanes: int) -> int:
    """The lane a record's partition key belongs to: stable across processes and restarts."""
    if lanes == 1:
        return 0
    digest = hashlib.blake2b(partition_key.encode() or item_key.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % lanes


def lease_duration(trigger: Trigger | None = None) -> timedelta:
    """How long a runner holds a cursor: renewed before each invocation, for the invocation's
    whole timeout, so a slow handler is never taken over while it runs."""
    extra = trigger.timeout_s if trigger else 0
    return timedelta(seconds=settings.SHARDWATCH_TRIGGER_LEASE_S + extra)


def pending_since_next(*, source: StreamSource, position: str | None = None) -> Subquery:
    """For an UPDATE of cursors of `source`'s triggers: when the first record past `position`
    (a sequence_key; by default each cursor's stored position) counts from for iterator ages
    (ApproximateCreationDateTime, or received_at where the source's record times are rounded;
    streams.lag), NULL when there is none. One probe of the (shard, sequence_key) index per
    cursor. An UPDATE that moves the position must pass the new one: SET expressions see the
    row as it was."""
    column = "received_at" if record_times_rounded(source=source) else "approximate_creation_time"
    after = OuterRef("position") if position is None else position
    return Subquery(
        ChangeRecord.objects.filter(shard_id=OuterRef("shard_id"), sequence_key__gt=after)
        .order_by("sequence_key")
        .values(column)[:1]
    )


def cursors_pending_mark(*, shard_id: int, oldest_at) -> int:
    """A batch of records was saved on shard `shard_id`, the oldest counting from `oldest_at`
    (an aware datetime; streams.signals.batch_saved): cursors of the shard that were caught up
    and still have a record past their position, as the database finds it when it writes, now
    wait since then; one that a runner moved past the batch meanwhile stays caught up. One
    UPDATE; returns how many cursors it marked. Every lane is marked; a lane with none of the
    batch's records clears its mark when its runner passes them."""
    waiting = Exists(ChangeRecord.objects.filter(shard_id=OuterRef("shard_id"), sequence_key__gt=OuterRef("position")))
    return TriggerCursor.objects.filter(waiting, shard_id=shard_id, pending_since__isnull=True).update(pending_since=oldest_at)


def cursors_pending_recount() -> int:
    """Retention deleted records (streams.signals.records_expired): every marked cursor now
    waits since its oldest record that is still stored past its position, or no longer waits
    (NULL) where none is left; cursors_claim takes only cursors with such a record, so nothing
    else would clear the mark of a cursor whose records all went. One UPDATE per source with
    triggers, of its marked cursors only; each row is worked out as the database writes it, so a
    runner moving the cursor meanwhile is not undone. Returns how many cursors it wrote."""
    written = 0
    for source in StreamSource.objects.filter(pk__in=Trigger.objects.values("source_id")):
        written += TriggerCursor.objects.filter(trigger__source=source, pending_since__isnull=False).update(
            pending_since=pending_since_next(source=source)
        )
    return written


def cursors_ensure(*, trigger: Trigger) -> int:
    """A cursor per shard and lane of the trigger's source. A LATEST trigger's cursors start
    after what was saved before the trigger was created; TRIM_HORIZON ones at the oldest
    stored record. Returns how many cursors were missing (and are now made).

    Runs on every dispatch (every two seconds, and after each saved batch), for sources of
    thousands of shards: it costs a few queries whatever the shard count, and positions are
    worked out only for the cursors that are missing.
    """
    existing = set(TriggerCursor.objects.filter(trigger=trigger).values_list("shard_id", "lane"))
    lanes = range(trigger.parallelization_factor)
    missing = [
        (shard_id, lane)
        for shard_id in Shard.objects.filter(stream__source_id=trigger.source_id).values_list("pk", flat=True)
        for lane in lanes
        if (shard_id, lane) not in existing
    ]
    if not missing:
        return 0
    positions: dict[int, str] = {}
    if trigger.starting_position == Trigger.StartingPosition.LATEST:
        # LATEST means from when the trigger was created, whenever its cursors are made;
        # shards that appear later start at their beginning, as Lambda's do.
        positions = dict(
            ChangeRecord.objects.filter(
                shard_id__in={shard_id for shard_id, _ in missing}, received_at__lte=trigger.created_at
            )
            .order_by()
            .values("shard_id")
            .annotate(newest=Max("sequence_key"))
            .values_list("shard_id", "newest")
        )
    # Two dispatchers may make the same cursor at once: the unique (trigger, shard, lane) key
    # keeps one, and the other's insert is skipped.
    TriggerCursor.objects.bulk_create(
        [
            TriggerCursor(trigger=trigger, shard_id=shard_id, lane=lane, position=positions.get(shard_id, ""))
            for shard_id, lane in missing
        ],
        ignore_conflicts=True,
    )
    TriggerCursor.objects.filter(
        trigger=trigger, shard_id__in={shard_id for shard_id, _ in missing}, pending_since__isnull=True
    ).update(pending_since=pending_since_next(source=trigger.source))
    return len(missing)


def cursors_claim(*, trigger_id: int | None = None, limit: int = 500) -> list[tuple[int, str]]:
    """Lease every cursor with work that nobody holds. Returns (cursor_id, owner) pairs."""
    now = timezone.now()
    candidates = TriggerCursor.objects.filter(trigger__enabled=True).unleased(now=now).exclude(next_attempt_at__gt=now)
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
        owner = TriggerCursor.objects.lease_take(cursor.pk, now=now, until=now + lease_duration())
        if owner is not None:
            claimed.append((cursor.pk, owner))
    return claimed


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


# A reset also ends the lease (see the module's docstring).
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
        TriggerCursor.objects.filter(pk=cursor.pk).update(
            position=target, pending_since=pending_since_next(source=trigger.source, position=target), **_RESET
        )


def cursors_reset_to(*, trigger: Trigger, at=None, sequence_number: str = "") -> None:
    """Move every cursor so that the next record sent is the first saved at or after `at`
    (ApproximateCreationDateTime), or the record with `sequence_number` and those after it."""
    cursors_ensure(trigger=trigger)
    for cursor in TriggerCursor.objects.filter(trigger=trigger):
        earlier = ChangeRecord.objects.filter(shard_id=cursor.shard_id)
        if sequence_number:
            earlier = earlier.filter(sequence_key__lt=sequence_key(sequence_number))
        else:
            earlier = earlier.filter(approximate_creation_time__lt=at)
        position = earlier.order_by("-sequence_key").values_list("sequence_key", flat=True).first() or ""
        TriggerCursor.objects.filter(pk=cursor.pk).update(
            position=position, pending_since=pending_since_next(source=trigger.source, position=position), **_RESET
        )

"""Reading triggers' state for the dashboard and the admin: health, timelines, dead letters.

Nothing here writes. Each function takes keyword arguments and returns plain values or
querysets named for what the page shows.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncMinute

from streams.models import ChangeRecord
from workers.batches import ReadAhead, batch_take, patterns_compile
from workers.models import FAILED_OUTCOMES, DeadLetter, Invocation, Outcome, Trigger, TriggerCursor
from workers.timeline import InvocationFilter

PER_MINUTE_BUCKETS = 60
ERROR_RATE_WINDOW = 100
# SQLite cannot ask "does this JSON list contain N" through the ORM, so there the record page
# looks through this many of the newest invocations in Python instead.
SQLITE_SCAN_LIMIT = 2000


def trigger_lag(*, trigger: Trigger) -> int:
    """Records stored after the furthest-behind lane of each shard: what the trigger still has
    to send (or filter out). Lanes of one shard share its records, so the slowest one counts."""
    slowest: dict[int, str] = {}
    for shard_id, position in TriggerCursor.objects.filter(trigger=trigger).values_list("shard_id", "position"):
        slowest[shard_id] = min(slowest.get(shard_id, position), position)
    return sum(
        ChangeRecord.objects.filter(shard_id=shard_id, sequence_key__gt=position).count()
        for shard_id, position in slowest.items()
    )


def triggers_iterator_age(*, now, trigger_ids=None) -> dict[int, float]:
    """Per trigger (every trigger, or those in `trigger_ids`), Lambda's IteratorAge for a
    consumer that is behind: the age in seconds at `now` of the oldest stored record that it
    has not processed yet (sent, filtered out or dead-lettered), over all its cursors; 0.0 when
    it is caught up. Where the source's record times are rounded to the minute, a record's age
    counts from when it was received (streams.lag).

    Read from TriggerCursor.pending_since, kept on write (workers.cursors), through an index
    of only the cursors that are behind: two queries, however many cursors there are.
    """
    return {pk: backlog["iterator_age_s"] for pk, backlog in triggers_backlog(now=now, trigger_ids=trigger_ids).items()}


def triggers_backlog(*, now, trigger_ids=None) -> dict[int, dict]:
    """Per trigger (every trigger, or those in `trigger_ids`): {"iterator_age_s" (as
    triggers_iterator_age), "cursors_waiting" (how many of its cursors have stored records
    they have not processed yet), "batch_attempts" (the most retries of the batch at one of its
    cursors, TriggerCursor.attempt; 0 when none is retrying)}. Two queries."""
    triggers = Trigger.objects.all() if trigger_ids is None else Trigger.objects.filter(pk__in=trigger_ids)
    backlog = {pk: {"iterator_age_s": 0.0, "cursors_waiting": 0, "batch_attempts": 0}
               for pk in triggers.values_list("pk", flat=True)}
    behind = (
        TriggerCursor.objects.filter(trigger_id__in=list(backlog))
        .values("trigger_id")
        .annotate(oldest=Min("pending_since"), waiting=Count("pk", filter=Q(pending_since__isnull=False)),
                  attempts=Max("attempt"))
        .order_by()
    )
    for row in behind:
        backlog[row["trigger_id"]] = {
            "iterator_age_s": round(max(0.0, (now - row["oldest"]).total_seconds()), 3) if row["oldest"] else 0.0,
            "cursors_waiting": row["waiting"],
            "batch_attempts": row["attempts"] or 0,
        }
    return backlog


def trigger_errors(*, trigger: Trigger) -> tuple[int, int]:
    """How many of the last ERROR_RATE_WINDOW (100) invocations failed (FAILED_OUTCOMES), and how many
    there were: (failed, looked at)."""
    outcomes = list(Invocation.objects.filter(trigger=trigger).order_by("-started_at", "-id").values_list("outcome", flat=True)[:ERROR_RATE_WINDOW])
    return sum(outcome in FAILED_OUTCOMES for outcome in outcomes), len(outcomes)


def trigger_error_rate(*, trigger: Trigger) -> float | None:
    """Share (0..1) of the last 100 invocations that failed (FAILED_OUTCOMES); None before the first."""
    failed, looked_at = trigger_errors(trigger=trigger)
    return failed / looked_at if looked_at else None


def trigger_last_invocation(*, trigger: Trigger):
    """When the trigger's newest invocation started (an aware datetime), or None."""
    return Invocation.objects.filter(trigger=trigger).aggregate(last=Max("started_at"))["last"]


def invocations_per_minute(*, now, trigger_ids) -> dict[int, list[int]]:
    """Invocations started per minute over the last hour, oldest minute first, for each
    trigger; the last bucket is the minute now is in. One query for all the triggers."""
    this_minute = now.replace(second=0, microsecond=0)
    start = this_minute - timedelta(minutes=PER_MINUTE_BUCKETS - 1)
    counts = {trigger_id: [0] * PER_MINUTE_BUCKETS for trigger_id in trigger_ids}
    rows = (
        Invocation.objects.filter(trigger_id__in=trigger_ids, started_at__gte=start, started_at__lte=now)
        .annotate(minute=TruncMinute("started_at"))
        .values_list("trigger_id", "minute")
        .annotate(count=Count("id"))
        .order_by()
    )
    for trigger_id, minute, count in rows:
        bucket = (minute - start) // timedelta(minutes=1)
        if 0 <= bucket < PER_MINUTE_BUCKETS:
            counts[trigger_id][bucket] += count
    return counts


def trigger_health(*, now) -> list[dict]:
    """Every trigger with what the trigger list shows of it."""
    triggers = list(Trigger.objects.select_related("source").annotate(dead_letter_count=Count("dead_letters")))
    per_minute = invocations_per_minute(now=now, trigger_ids=[trigger.pk for trigger in triggers])
    health = []
    for trigger in triggers:
        rate = trigger_error_rate(trigger=trigger)
        health.append({
            "trigger": trigger,
            "lag": trigger_lag(trigger=trigger),
            "last_invocation": trigger_last_invocation(trigger=trigger),
            "error_rate": rate,
            "error_percent": None if rate is None else round(100 * rate),
            "per_minute": per_minute[trigger.pk],
            "invocations_last_hour": sum(per_minute[trigger.pk]),
            "dead_letters": trigger.dead_letter_count,
        })
    return health


def invocations_timeline(*, flt: InvocationFilter, limit: int = 100) -> list[Invocation]:
    """The newest invocations that `flt` lets through, first."""
    return list(flt.apply(Invocation.objects.select_related("trigger").order_by("-started_at", "-id"))[:limit])


def invocations_after(*, flt: InvocationFilter, since: int, limit: int) -> list[Invocation]:
    """The invocations `flt` lets through recorded after the one with id `since`, oldest
    first, with their trigger: how a timeline catches up after a dropped socket."""
    return list(flt.apply(Invocation.objects.filter(pk__gt=since)).select_related("trigger").order_by("id")[:limit])


def invocation_records(*, invocation: Invocation) -> list[ChangeRecord]:
    """The records the invocation sent, in the order it sent them. Records are never edited,
    so lambda_event() of these is byte for byte the event that went out. Records removed by
    retention since are missing from the list."""
    ids = [record_id for record_id in invocation.record_ids if isinstance(record_id, int)]
    found = ChangeRecord.objects.select_related("source", "shard__stream").in_bulk(ids)
    return [found[record_id] for record_id in ids if record_id in found]


def dead_letters_list(*, trigger_id: int | None = None, limit: int = 200):
    """The newest dead letters first, with their trigger and shard."""
    letters = DeadLetter.objects.select_related("trigger", "shard", "invocation").order_by("-created_at", "-id")
    if trigger_id is not None:
        letters = letters.filter(trigger_id=trigger_id)
    return list(letters[:limit])


def invocations_for_record(*, record_id: int, limit: int = 50) -> list[Invocation]:
    """Invocations that sent this record, newest first.

    On PostgreSQL this is a jsonb containment query (`record_ids @> [id]`). SQLite's JSONField
    has no `contains` lookup, so there the newest SQLITE_SCAN_LIMIT invocations are read and
    filtered in Python: a record sent before those is not listed on SQLite.
    """
    invocations = Invocation.objects.select_related("trigger").order_by("-started_at", "-id")
    if connection.vendor == "postgresql":
        return list(invocations.filter(record_ids__contains=[record_id])[:limit])
    found = []
    for invocation in invocations[:SQLITE_SCAN_LIMIT]:
        if record_id in invocation.record_ids:
            found.append(invocation)
            if len(found) == limit:
                break
    return found


# What the alert rules ask of triggers (alerts.conditions).


def trigger_outcomes_since(*, trigger_ids, since) -> dict[int, tuple[int, int]]:
    """Per trigger: (invocations that failed (FAILED_OUTCOMES), invocations) started at or after
    `since`. Triggers with no invocation then are left out. One query."""
    counts: dict[int, list[int]] = {}
    rows = (
        Invocation.objects.filter(trigger_id__in=trigger_ids, started_at__gte=since)
        .values_list("trigger_id", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    for trigger_id, outcome, n in rows:
        failed_total = counts.setdefault(trigger_id, [0, 0])
        failed_total[1] += n
        if outcome in FAILED_OUTCOMES:
            failed_total[0] += n
    return {trigger_id: (failed, total) for trigger_id, (failed, total) in counts.items()}


def dead_letters_since(*, trigger_ids, since) -> dict[int, int]:
    """How many dead letters each trigger added at or after `since`; triggers with none are left out."""
    return dict(
        DeadLetter.objects.filter(trigger_id__in=trigger_ids, created_at__gte=since)
        .values("trigger_id").annotate(n=Count("id")).values_list("trigger_id", "n").order_by()
    )


@dataclass(frozen=True)
class CursorBatch:
    """A cursor's current batch and its last invocation (cursor_batch)."""

    # The records the runner sends next, in the order it sends them (ChangeRecords with
    # source and shard__stream); empty when the cursor has nothing to send.
    records: list[ChangeRecord]
    # The newest invocation the runner made of this batch (one that sent its first record),
    # or None when it has not sent it yet.
    invocation: Invocation | None


def cursor_batch(*, cursor: TriggerCursor) -> CursorBatch:
    """The batch a cursor is at, built from the cursor itself as its runner builds it
    (workers.batches.batch_take): its lane's records after `position`, at most `batch_limit`
    (else BatchSize) of them and 6 MB of event, none after `bisect_end`, without those its
    filter patterns leave out; and the cursor's last invocation of that batch. Replays
    (Invocation.replay) share the cursor's shard and lane but are never its invocation. The
    cursor comes with trigger__source and shard__stream, or they are read. A few queries."""
    trigger = cursor.trigger
    ahead = ReadAhead(shard_id=cursor.shard_id, lane=cursor.lane, lanes=trigger.parallelization_factor,
                      region=trigger.source.region, stream_arn=cursor.shard.stream.arn)
    batch = batch_take(ahead=ahead, position=cursor.position, size=cursor.batch_limit or trigger.batch_size,
                       patterns=patterns_compile(tuple(trigger.filter_patterns)), until=cursor.bisect_end)
    if not batch.records:
        return CursorBatch(records=[], invocation=None)
    found = ChangeRecord.objects.select_related("source", "shard__stream").in_bulk([record.pk for record in batch.records])
    records = [found[record.pk] for record in batch.records if record.pk in found]
    invocation = (
        Invocation.objects.filter(trigger_id=cursor.trigger_id, shard_id=cursor.shard_id, lane=cursor.lane, replay=False)
        .order_by("-started_at", "-id").first()
    )
    if invocation is not None and batch.records[0].pk not in invocation.record_ids:
        invocation = None  # the runner has not sent this batch yet
    return CursorBatch(records=records, invocation=invocation)


def cursors_retrying(*, trigger_ids, min_attempt: int) -> list[dict]:
    """Cursors whose batch has been retried at least `min_attempt` times (TriggerCursor.attempt:
    the retries of the batch at the cursor's position so far), each with its batch
    (cursor_batch): {"cursor": TriggerCursor (with trigger, shard), "attempt": int,
    "invocation": the cursor's last invocation of the batch or None, "first_record_id": the
    batch's first record, None when there is none}. A few queries per cursor found."""
    cursors = list(
        TriggerCursor.objects.filter(trigger_id__in=trigger_ids, attempt__gte=min_attempt)
        .select_related("trigger__source", "shard__stream").order_by("trigger_id", "shard_id", "lane")
    )
    found = []
    for cursor in cursors:
        batch = cursor_batch(cursor=cursor)
        found.append({"cursor": cursor, "attempt": cursor.attempt, "invocation": batch.invocation,
                      "first_record_id": batch.records[0].pk if batch.records else None})
    return found


def cursor_failing_batch(*, cursor: TriggerCursor) -> tuple[Invocation | None, list[ChangeRecord]]:
    """The batch a cursor is retrying (cursor_batch) when its last invocation of it did not
    succeed: (that invocation, the batch's records in the order the runner sends them); else
    (None, [])."""
    batch = cursor_batch(cursor=cursor)
    if batch.invocation is None or batch.invocation.outcome == Outcome.SUCCESS:
        return None, []
    return batch.invocation, batch.records

"""Read-side queries for pages and APIs."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, OuterRef, Prefetch, Q, Subquery
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from streams.consumers import stream_consumers
from streams.lag import record_times_rounded
from streams.leases import unleased_condition
from meters.store import labels_key, series_steps
from streams.models import ChangeRecord, Gap, Shard, Stream, StreamSource, sequence_key

PER_MINUTE_BUCKETS = 60
GAPS_SHOWN = 20
# DynamoDB keeps a stream's records, and lists its shards, for 24 hours. A shard finished
# before that has nothing left to show, and a long-lived source collects thousands of them.
FINISHED_SHARDS_SHOWN_FOR = timedelta(hours=24)


def sources_for_overview(*, now=None, source_ids=None):
    """Every source (or those in source_ids) with its streams, its shards still of interest
    and its newest gaps, annotated with its newest record times, in a fixed number of queries."""
    now = now or timezone.now()
    recent_shards = Shard.objects.filter(
        Q(finished_at__isnull=True) | Q(finished_at__gte=now - FINISHED_SHARDS_SHOWN_FOR)
    ).order_by("discovered_at", "id")
    records = ChangeRecord.objects.filter(source=OuterRef("pk"))
    sources = StreamSource.objects.annotate(
        # One probe of record_time_idx per source, read backwards.
        newest_record_at=Subquery(
            records.order_by("-approximate_creation_time").values("approximate_creation_time")[:1]
        ),
        # Readers stamp a shard when a poll returns records.
        last_received_at=Subquery(
            Shard.objects.filter(stream__source=OuterRef("pk"), last_record_at__isnull=False)
            .order_by("-last_record_at")
            .values("last_record_at")[:1]
        ),
        gap_count=Subquery(
            Gap.objects.filter(source=OuterRef("pk")).order_by().values("source").annotate(n=Count("pk")).values("n")
        ),
    ).prefetch_related(
        Prefetch(
            "streams",
            queryset=Stream.objects.order_by("discovered_at", "id").prefetch_related(
                Prefetch("shards", queryset=recent_shards)
            ),
        ),
        # A sliced prefetch needs to_attr: the newest gaps land in source.recent_gaps.
        Prefetch(
            "gaps",
            queryset=Gap.objects.select_related("shard").order_by("-detected_at", "-id")[:GAPS_SHOWN],
            to_attr="recent_gaps",
        ),
    )
    if source_ids is not None:
        sources = sources.filter(pk__in=source_ids)
    return sources.order_by("table_name", "region", "id")


def source_health(*, now, source_ids=None) -> list[dict]:
    """What the overview page and its JSON API show for each source, as plain dicts.

    Eight queries however many sources, shards and records there are. Datetimes are aware
    datetimes (DjangoJSONEncoder writes them as ISO 8601). "lag_seconds" is sources_lag's
    lag_s ("lag_since" the moment that far before `now`), and "lag_rounded" its `rounded`. Each stream's "shards" are its
    lineage roots (no parent, or a parent we do not show), each with its "children".
    """
    sources = list(sources_for_overview(now=now, source_ids=source_ids))
    if not sources:
        return []
    ids = [source.pk for source in sources]
    shard_stats = _shard_stats(source_ids=ids)
    per_minute = records_per_minute(now=now, source_ids=ids)
    lags = sources_lag(now=now, source_ids=ids)
    return [
        _source_dict(source, now=now, shard_stats=shard_stats, per_minute=per_minute[source.pk], lag=lags[source.pk])
        for source in sources
    ]


def records_per_minute(*, now, source_ids) -> dict[int, list[int]]:
    """Records read per minute over the last hour, oldest minute first, for each of
    `source_ids`; the last bucket is the minute `now` is in. Read from the meter
    shardwatch_records_read_total, the figure /metrics and the charts show (so a process's
    last SHARDWATCH_METERS_FLUSH_S of counts arrive late, never twice)."""
    this_minute = now.replace(second=0, microsecond=0)
    start = this_minute - timedelta(minutes=PER_MINUTE_BUCKETS - 1)
    _, series = series_steps(name="shardwatch_records_read_total", since=start, until=this_minute, step=timedelta(minutes=1))
    return {
        source_id: [int(count) for count in series.get(labels_key(labels={"source": source_id}), [0] * PER_MINUTE_BUCKETS)]
        for source_id in source_ids
    }


def _shard_stats(*, source_ids) -> dict[int, dict]:
    """Per stream: shards in each state (shown or not) and the newest poll of any of them."""
    rows = (
        Shard.objects.filter(stream__source_id__in=source_ids)
        .values("stream_id")
        .annotate(
            open=Count("pk", filter=Q(state=Shard.State.OPEN)),
            closed=Count("pk", filter=Q(state=Shard.State.CLOSED)),
            finished=Count("pk", filter=Q(state=Shard.State.FINISHED)),
            last_polled_at=Max("last_polled_at"),
        )
        .order_by()
    )
    return {row.pop("stream_id"): row for row in rows}


def _source_dict(source: StreamSource, *, now, shard_stats: dict, per_minute: list[int], lag: "SourceLag") -> dict:
    streams = [_stream_dict(stream, now=now, stats=shard_stats.get(stream.pk, {})) for stream in source.streams.all()]
    polls = [shard_stats[stream.pk]["last_polled_at"] for stream in source.streams.all() if stream.pk in shard_stats]
    polls = [poll for poll in polls if poll is not None]
    newest = source.newest_record_at
    return {
        "id": source.pk,
        "table": source.table_name,
        "region": source.region,
        "endpoint_url": source.endpoint_url,
        "view_type": source.view_type,
        "start_position": source.start_position,
        "retention_days": source.retention_days,
        "enabled": source.enabled,
        "status": source.status,
        "status_display": source.get_status_display(),
        "last_error": source.last_error,
        "last_error_at": source.last_error_at,
        "gaps": [_gap_dict(gap) for gap in source.recent_gaps],
        "gap_count": source.gap_count or 0,
        "streams": streams,
        "newest_record_at": newest,
        "last_received_at": source.last_received_at,
        "lag_seconds": lag.lag_s,
        "lag_since": None if lag.lag_s is None else now - timedelta(seconds=lag.lag_s),
        "lag_rounded": lag.rounded,
        "last_polled_at": max(polls, default=None),
        "per_minute": per_minute,
        "records_last_hour": sum(per_minute),
    }


def _gap_dict(gap: Gap) -> dict:
    return {
        "id": gap.pk,
        "detected_at": gap.detected_at,
        "shard_id": gap.shard.shard_id if gap.shard else None,
        "after_sequence_number": gap.after_sequence_number,
        "reason": gap.reason,
    }


def _stream_dict(stream: Stream, *, now, stats: dict) -> dict:
    shards = list(stream.shards.all())
    finished_shown = sum(1 for shard in shards if shard.state == Shard.State.FINISHED)
    return {
        "id": stream.pk,
        "arn": stream.arn,
        "label": stream.label,
        "state": stream.state,
        "state_display": stream.get_state_display(),
        "shard_counts": {state: stats.get(state, 0) for state in Shard.State.values},
        "finished_hidden": max(0, stats.get(Shard.State.FINISHED, 0) - finished_shown),
        "shards": shard_lineage(shards=[_shard_dict(shard, now=now) for shard in shards]),
        "consumers": stream_consumers(stream=stream),
    }


def _shard_dict(shard: Shard, *, now) -> dict:
    return {
        "shard_id": shard.shard_id,
        "parent_shard_id": shard.parent_shard_id,
        "state": shard.state,
        "state_display": shard.get_state_display(),
        "checkpoint": shard.checkpoint,
        "last_polled_at": shard.last_polled_at,
        "last_polled_by": shard.last_polled_by,
        "last_record_at": shard.last_record_at,
        "lease_held": bool(shard.lease_owner) and shard.lease_expires_at is not None and shard.lease_expires_at > now,
        "lease_expires_at": shard.lease_expires_at,
        "error": shard.last_error,
        "error_count": shard.error_count,
    }


def shard_lineage(*, shards: list[dict]) -> list[dict]:
    """Arrange one stream's shard dicts as a forest: returns the roots (no parent, or a parent
    not among `shards`), each given "depth" and "children", children in the order given."""
    by_id = {shard["shard_id"]: shard for shard in shards}
    children: dict[str, list[dict]] = {}
    roots = []
    for shard in shards:
        shard["children"] = []
        parent = shard["parent_shard_id"]
        if parent and parent in by_id and parent != shard["shard_id"]:
            children.setdefault(parent, []).append(shard)
        else:
            roots.append(shard)
    placed = set()

    def place(root: dict) -> None:
        stack = [(root, 0)]
        while stack:
            shard, depth = stack.pop()
            placed.add(shard["shard_id"])
            shard["depth"] = depth
            kids = [kid for kid in children.get(shard["shard_id"], []) if kid["shard_id"] not in placed]
            shard["children"] = kids
            stack.extend((kid, depth + 1) for kid in reversed(kids))

    for root in roots:
        place(root)
    # Parents come from DynamoDB; a loop of parents (never seen, but not ours to rule out)
    # has no root, so its shards are shown as roots rather than dropped.
    for shard in shards:
        if shard["shard_id"] not in placed:
            roots.append(shard)
            place(shard)
    return roots


def reader_missing_after() -> timedelta:
    """How long a readable shard may wait for a reader before the Streams page says that no
    reader is running: twice SHARDWATCH_LEASE_S and one SHARDWATCH_DISPATCH_INTERVAL_S.

    A live reader takes a free shard at its next balance (every SHARDWATCH_READER_BALANCE_S),
    a dead reader's leases expire after SHARDWATCH_LEASE_S, and dispatch_readers queues the next
    reader task every SHARDWATCH_DISPATCH_INTERVAL_S; a shard that waits longer than all that
    is not between two readers: there is none."""
    return timedelta(seconds=2 * settings.SHARDWATCH_LEASE_S + settings.SHARDWATCH_DISPATCH_INTERVAL_S)


def readers_alive(*, now) -> list[dict]:
    """The stream readers holding an unexpired lease on a shard that is not finished at `now`,
    as readers_summary's "alive" lists them: [{"owner", "name", "shards", "renewed_at"}],
    sorted by name, then owner. One query."""
    held = (
        Shard.objects.exclude(state=Shard.State.FINISHED)
        .exclude(unleased_condition(now=now))  # live leases, as Reader.leases_balance counts readers
        .values("lease_owner")
        .annotate(name=Max("last_polled_by"), shards=Count("pk"), renewed_at=Max("last_polled_at"))
        .order_by()
    )
    readers = [
        {"owner": row["lease_owner"], "name": row["name"] or row["lease_owner"], "shards": row["shards"],
         "renewed_at": row["renewed_at"]}
        for row in held
    ]
    readers.sort(key=lambda reader: (reader["name"], reader["owner"]))
    return readers


def shards_by_state(*, source_ids=None) -> dict[int, dict[str, int]]:
    """Per source (all, or those in `source_ids`): how many of its shards are in each
    Shard.State, every state present (0 when none). One query."""
    sources = StreamSource.objects.all() if source_ids is None else StreamSource.objects.filter(pk__in=source_ids)
    counts = {pk: dict.fromkeys(Shard.State.values, 0) for pk in sources.values_list("pk", flat=True)}
    rows = (
        Shard.objects.filter(stream__source_id__in=list(counts))
        .values_list("stream__source_id", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for source_id, state, n in rows:
        counts[source_id][state] = n
    return counts


def readers_summary(*, now) -> dict:
    """The stream readers (streams.reader.Reader) alive at `now`, and the readable shards none
    of them holds, for the Streams page's Readers panel. Two queries however many shards.

    {"alive": [{"owner", "name", "shards", "renewed_at"}],
     "shards": <readable shards (Shard.objects.readable())>,
     "waiting": <readable shards that no unexpired lease holds>,
     "waiting_long": <of those, the ones waiting longer than reader_missing_after()>,
     "reader_queue": settings.SHARDWATCH_READER_QUEUE,
     "warning": "" | "N shards have no reader: is the reader worker running? (celery ...)"}

    A reader is the owner of an unexpired lease on a shard that is not finished: "owner" is its
    lease token (which its log lines name), "name" its host:pid (the shards' `last_polled_by`,
    stamped when it took them; the token when none says), "shards" how many it holds, and
    "renewed_at" (an aware datetime, or None) its latest renewal or saving poll (the shards'
    newest `last_polled_at`; a reader renews every SHARDWATCH_LEASE_S / 3, and a poll that
    saves records writes it too, streams.ingest.records_save). Readers come sorted by
    name, then owner. A reader that holds no shard (more readers than shards) writes nothing to
    the database and is not listed.

    A shard waits since its lease expired, or since the last renewal of the reader that
    released it, or since it was discovered, or since its parent finished, whichever is latest
    that applies: a child shard found long before its parent was read to its end has waited
    only since then.
    """
    readers = readers_alive(now=now)

    parent_finished_at = Subquery(
        Shard.objects.filter(stream=OuterRef("stream"), shard_id=OuterRef("parent_shard_id"))
        .order_by()
        .values("finished_at")[:1]
    )
    # Greatest with a NULL is NULL on SQLite, hence every argument is coalesced.
    waiting_since = Greatest(
        Coalesce("lease_expires_at", "last_polled_at", "discovered_at"),
        Coalesce(parent_finished_at, "discovered_at"),
    )
    free = unleased_condition(now=now)
    counts = (
        Shard.objects.readable()
        .annotate(waiting_since=waiting_since)
        .aggregate(
            shards=Count("pk"),
            waiting=Count("pk", filter=free),
            waiting_long=Count("pk", filter=free & Q(waiting_since__lt=now - reader_missing_after())),
        )
    )
    queue = settings.SHARDWATCH_READER_QUEUE
    warning = ""
    if counts["waiting_long"]:
        waiting = counts["waiting"]
        warning = (
            f"{waiting} shard{'s' if waiting != 1 else ''} {'have' if waiting != 1 else 'has'} no reader: "
            f"is the reader worker running? (celery -A config worker -Q {queue})"
        )
    return {"alive": readers, **counts, "reader_queue": queue, "warning": warning}


# What the alert rules ask of sources and shards (alerts.conditions).


def sources_watched(*, source_ids=None) -> list[StreamSource]:
    """Enabled sources (or, of those, the ones in source_ids), by table name."""
    sources = StreamSource.objects.filter(enabled=True)
    if source_ids is not None:
        sources = sources.filter(pk__in=source_ids)
    return list(sources.order_by("table_name", "region", "id"))


def gaps_since(*, since, source_ids=None) -> dict[int, dict]:
    """Gaps detected at or after `since`, per source id: {"count": int, "latest": Gap}. Sources
    without such a gap are left out. Two queries."""
    gaps = Gap.objects.filter(detected_at__gte=since)
    if source_ids is not None:
        gaps = gaps.filter(source_id__in=source_ids)
    counts = dict(gaps.order_by().values("source_id").annotate(n=Count("pk")).values_list("source_id", "n"))
    found = {}
    for gap in gaps.select_related("shard").order_by("source_id", "-detected_at", "-id"):
        if gap.source_id not in found:
            found[gap.source_id] = {"count": counts.get(gap.source_id, 0), "latest": gap}
    return found


def shards_stuck(*, now, still_for_s: float, source_ids=None) -> list[dict]:
    """Shards a reader holds, with records waiting, whose checkpoint has not moved for
    `still_for_s` seconds. Each: {"shard": Shard (with stream__source), "waiting": str,
    "checkpoint_still_since": datetime}.

    What the readers store decides what "records waiting" can mean, and no more:
    - a closed shard (DescribeStream gave its EndingSequenceNumber) whose checkpoint is before
      that number: records are known to be waiting;
    - a shard whose latest polls failed (`error_count` above 0, reset by the next poll that
      works): whatever the stream holds past the checkpoint cannot be read. DynamoDB Streams
      has no call that says how many records an open shard holds past an iterator, so for an
      open shard whose polls work and return nothing, nothing is known to wait, and it is
      never called stuck.
    The checkpoint moves in the same transaction that saves records and stamps
    `last_record_at` (streams.ingest), so "not moved since" is `last_record_at`, or
    `discovered_at` for a shard that never returned a record.
    """
    still_since = now - timedelta(seconds=still_for_s)
    shards = (
        Shard.objects.exclude(unleased_condition(now=now))
        .exclude(state=Shard.State.FINISHED)
        .filter(Q(last_record_at__lt=still_since) | Q(last_record_at__isnull=True, discovered_at__lt=still_since))
        .filter(Q(error_count__gt=0) | Q(state=Shard.State.CLOSED))
        .select_related("stream__source")
        .order_by("id")
    )
    if source_ids is not None:
        shards = shards.filter(stream__source_id__in=source_ids)
    stuck = []
    for shard in shards:
        if shard.error_count:
            waiting = f"its last {shard.error_count} poll(s) failed: {shard.last_error[:300]}"
        elif shard.ending_sequence_number and (
            not shard.checkpoint or sequence_key(shard.checkpoint) < sequence_key(shard.ending_sequence_number)
        ):
            waiting = f"closed at sequence number {shard.ending_sequence_number}, read to {shard.checkpoint or 'nothing yet'}"
        else:
            continue
        stuck.append({"shard": shard, "waiting": waiting, "checkpoint_still_since": shard.last_record_at or shard.discovered_at})
    return stuck


# Shards named per source in SourceLag.worst_shards (and so in /metrics' shard-level gauges).
WORST_SHARDS = 3


@dataclass(frozen=True)
class SourceLag:
    """How far behind its stream a source is read (streams.lag).

    `lag_s`: seconds, the highest over its readable shards of (iterator age at the shard's
    last poll + seconds since that poll); a shard never polled counts from when it became
    readable (discovered, or its parent finished). None when no shard is readable (none
    found yet, all read to their end, or the source is disabled). `rounded`: record times
    are rounded to the minute (DynamoDB Local), so ages come from receive and poll times.
    `polled_ago_s`: seconds since the least recently polled readable shard's last known poll
    (None as lag_s). `worst_shards`: up to WORST_SHARDS (shard_id, lag_s), highest first.
    """

    source_id: int
    lag_s: float | None
    rounded: bool
    polled_ago_s: float | None
    worst_shards: tuple[tuple[str, float], ...] = ()


def sources_lag(*, now, source_ids=None) -> dict[int, SourceLag]:
    """Every source's (or those in `source_ids`) SourceLag at `now`, by source id. Two
    queries, one row per readable shard: a few milliseconds at 1,000 shards."""
    sources = StreamSource.objects.only("pk", "stream_arn", "record_time_step_s")
    if source_ids is not None:
        sources = sources.filter(pk__in=source_ids)
    rounded = {source.pk: record_times_rounded(source=source) for source in sources}
    parent_finished_at = Subquery(
        Shard.objects.filter(stream=OuterRef("stream"), shard_id=OuterRef("parent_shard_id"))
        .order_by()
        .values("finished_at")[:1]
    )
    shards = (
        Shard.objects.readable()
        .filter(stream__source_id__in=list(rounded))
        .annotate(readable_since=Greatest("discovered_at", Coalesce(parent_finished_at, "discovered_at")))
        .order_by()
        .values_list("stream__source_id", "shard_id", "iterator_age_s", "iterator_age_at", "readable_since")
    )
    per_source: dict[int, list[tuple[float, str, float]]] = {}
    for source_id, shard_id, age_s, age_at, readable_since in shards:
        if age_at is None:
            since_poll = (now - readable_since).total_seconds()
            lag = since_poll
        else:
            since_poll = (now - age_at).total_seconds()
            lag = (age_s or 0.0) + since_poll
        per_source.setdefault(source_id, []).append((max(0.0, lag), shard_id, max(0.0, since_poll)))
    result = {}
    for source_id, is_rounded in rounded.items():
        rows = per_source.get(source_id)
        if not rows:
            result[source_id] = SourceLag(source_id=source_id, lag_s=None, rounded=is_rounded, polled_ago_s=None)
            continue
        worst = sorted(rows, reverse=True)[:WORST_SHARDS]
        result[source_id] = SourceLag(
            source_id=source_id,
            lag_s=round(worst[0][0], 3),
            rounded=is_rounded,
            polled_ago_s=round(max(row[2] for row in rows), 3),
            worst_shards=tuple((shard_id, round(lag, 3)) for lag, shard_id, _ in worst),
        )
    return result

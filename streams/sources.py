"""Stream sources: validating a table against DynamoDB, registering it, and keeping its
streams and shards in step with DescribeTable and DescribeStream."""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from meters.store import meter_count
from streams import aws
from streams.consumers import stream_consumers_refresh
from streams.models import Gap, Shard, Stream, StreamSource

log = logging.getLogger(__name__)


class SourceError(Exception):
    """A table cannot be watched; the message is meant for the user."""


@dataclass(frozen=True)
class TableStream:
    stream_arn: str
    stream_label: str
    view_type: str
    key_schema: list[str]


def table_describe(*, table_name: str, region: str, endpoint_url: str = "") -> TableStream:
    """The table's current stream, or SourceError saying why it cannot be watched."""
    client = aws.dynamodb_client(region=region, endpoint_url=endpoint_url)
    try:
        table = client.describe_table(TableName=table_name)["Table"]
    except aws.AWS_ERRORS as exc:
        if aws.classify(exc) is aws.Failure.NOT_FOUND:
            raise SourceError(f"Table {table_name!r} does not exist in region {region}.") from exc
        raise SourceError(f"Could not describe table {table_name!r}: {aws.describe(exc)}") from exc
    spec = table.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled") or not table.get("LatestStreamArn"):
        raise SourceError(
            f"Table {table_name!r} has no stream enabled. Enable one with a view type such as "
            "NEW_AND_OLD_IMAGES (StreamSpecification) and try again."
        )
    hash_first = sorted(table["KeySchema"], key=lambda key: key["KeyType"] != "HASH")
    return TableStream(
        stream_arn=table["LatestStreamArn"],
        stream_label=table.get("LatestStreamLabel", ""),
        view_type=spec.get("StreamViewType", ""),
        key_schema=[key["AttributeName"] for key in hash_first],
    )


def source_add(
    *,
    table_name: str,
    region: str,
    endpoint_url: str = "",
    start_position: str = StreamSource.StartPosition.TRIM_HORIZON,
    retention_days: int | None = None,
) -> StreamSource:
    """Validate the table against DynamoDB and start watching its stream.

    Its shards are found by discovery: the caller enqueues streams.tasks.discover_source
    once this has committed (or leaves it to the periodic discovery).
    """
    table_name = table_name.strip()
    if not table_name:
        raise SourceError("A table name is required.")
    if start_position not in StreamSource.StartPosition.values:
        raise SourceError(f"Start position must be one of {', '.join(StreamSource.StartPosition.values)}.")
    if StreamSource.objects.filter(table_name=table_name, region=region, endpoint_url=endpoint_url).exists():
        raise SourceError(f"Table {table_name!r} in {region} is already a source.")
    described = table_describe(table_name=table_name, region=region, endpoint_url=endpoint_url)
    source = StreamSource(
        table_name=table_name,
        region=region,
        endpoint_url=endpoint_url,
        start_position=start_position,
    )
    if retention_days is not None:
        source.retention_days = retention_days
    _apply_description(source, described)
    try:
        with transaction.atomic():
            source.save()
            Stream.objects.create(source=source, arn=described.stream_arn, label=described.stream_label)
    except IntegrityError:
        raise SourceError(f"Table {table_name!r} in {region} is already a source.") from None
    return source


def _apply_description(source: StreamSource, described: TableStream) -> None:
    source.stream_arn = described.stream_arn
    source.view_type = described.view_type
    source.key_schema = described.key_schema


def source_set_status(*, source_id: int, status: str, error: str = "") -> None:
    """Record a source's health. Only writes when something changed, so that a healthy
    reader loop costs no extra UPDATE per poll."""
    now = timezone.now()
    if error:
        StreamSource.objects.filter(pk=source_id).update(status=status, last_error=error[:4000], last_error_at=now)
    else:
        StreamSource.objects.filter(pk=source_id).exclude(status=status).update(status=status)


def source_discover(*, source_id: int) -> None:
    """Bring a source's streams and shards in step with DynamoDB.

    A new stream ARN (the table's stream was disabled and enabled again) becomes the current
    stream; older ones stay until they are read to their end. Then each stream's Lambda event
    source mappings are looked up, when they are due (streams.consumers).
    """
    source = StreamSource.objects.get(pk=source_id)
    if not source.enabled:
        return
    try:
        described = table_describe(
            table_name=source.table_name, region=source.region, endpoint_url=source.endpoint_url
        )
    except SourceError as exc:
        # A SourceError without an AWS error behind it is a table that has no stream.
        if exc.__cause__ is None:
            status = StreamSource.Status.STREAM_DISABLED
        else:
            status = StreamSource.Status.after_failure(aws.classify(exc.__cause__))
        source_set_status(source_id=source.pk, status=status, error=str(exc))
        # The old stream stays readable for 24 hours after its table or stream goes away.
        Stream.objects.filter(source=source, state=Stream.State.CURRENT).update(state=Stream.State.SUPERSEDED)
        described = None
    else:
        if described.stream_arn != source.stream_arn or described.view_type != source.view_type:
            _apply_description(source, described)
            source.save(update_fields=["stream_arn", "view_type", "key_schema"])
        with transaction.atomic():
            stream, created = Stream.objects.get_or_create(
                source=source, arn=described.stream_arn, defaults={"label": described.stream_label}
            )
            if stream.state != Stream.State.CURRENT and not created:
                stream.state = Stream.State.CURRENT
                stream.save(update_fields=["state"])
            Stream.objects.filter(source=source, state=Stream.State.CURRENT).exclude(pk=stream.pk).update(
                state=Stream.State.SUPERSEDED
            )
    healthy = True
    for stream in Stream.objects.filter(source=source).for_discovery():
        healthy &= stream_sync_shards(stream_id=stream.pk)
    StreamSource.objects.filter(pk=source.pk).update(last_discovered_at=timezone.now())
    if described is not None and healthy:
        source_set_status(source_id=source.pk, status=StreamSource.Status.ACTIVE)
    for stream_id in Stream.objects.filter(source=source).for_discovery().values_list("pk", flat=True):
        # Last, and guarded: which other consumers read the stream is for the page, and a
        # look-up that breaks in a way nobody foresaw must not stop discovery (nor, through it,
        # the readers of new shards). AWS errors are stored by the look-up itself.
        try:
            stream_consumers_refresh(stream_id=stream_id)
        except Exception:
            log.exception("Looking up the event source mappings of stream %s failed", stream_id)


def _describe_all_shards(client, stream_arn: str) -> tuple[list[dict], str]:
    # DescribeStream returns at most 100 shards a call and boto3 has no paginator for it.
    shards: list[dict] = []
    kwargs = {"StreamArn": stream_arn}
    while True:
        description = client.describe_stream(**kwargs)["StreamDescription"]
        shards.extend(description.get("Shards", []))
        last = description.get("LastEvaluatedShardId")
        if not last:
            return shards, description.get("StreamStatus", "")
        kwargs["ExclusiveStartShardId"] = last


def _describe_failed(*, stream: Stream, exc: Exception) -> bool:
    """Record why DescribeStream failed. Returns what stream_sync_shards returns: False, unless
    the stream is gone and was not the source's current one (then there is nothing to wait for)."""
    failure = aws.classify(exc)
    if failure is aws.Failure.NOT_FOUND:
        stream_mark_gone(stream_id=stream.pk, reason=f"Stream deleted: {aws.describe(exc)}")
        return stream.state != Stream.State.CURRENT
    status = StreamSource.Status.after_failure(failure)
    source_set_status(source_id=stream.source_id, status=status, error=f"DescribeStream failed: {aws.describe(exc)}")
    return False


def _shards_record(*, stream: Stream, described: list[dict]) -> None:
    """Create a Shard row for each shard in `described` (DescribeStream's Shard objects) that we
    do not have, and close the rows of those that now have an EndingSequenceNumber."""
    source = stream.source
    ids = [item["ShardId"] for item in described]
    known = dict(
        Shard.objects.filter(stream=stream, shard_id__in=ids).values_list("shard_id", "ending_sequence_number")
    )
    # A source that starts at LATEST skips what is already in the stream, but only the first
    # time we see it: shards that appear later (splits, a re-enabled stream) are new data.
    first_sight = (
        source.start_position == StreamSource.StartPosition.LATEST
        and not known
        and not Shard.objects.filter(stream__source=source).exists()
    )
    new_shards = []
    for item in described:
        ending = item.get("SequenceNumberRange", {}).get("EndingSequenceNumber", "")
        if item["ShardId"] not in known:
            shard = Shard(
                stream=stream,
                shard_id=item["ShardId"],
                parent_shard_id=item.get("ParentShardId", ""),
                starting_sequence_number=item.get("SequenceNumberRange", {}).get("StartingSequenceNumber", ""),
                ending_sequence_number=ending,
                state=Shard.State.CLOSED if ending else Shard.State.OPEN,
            )
            if first_sight:
                if ending:
                    shard.state = Shard.State.FINISHED
                    shard.finished_at = timezone.now()
                else:
                    shard.initial_position = "LATEST"
            new_shards.append(shard)
        elif ending and not known[item["ShardId"]]:
            Shard.objects.filter(stream=stream, shard_id=item["ShardId"]).update(ending_sequence_number=ending)
            Shard.objects.filter(stream=stream, shard_id=item["ShardId"], state=Shard.State.OPEN).update(
                state=Shard.State.CLOSED
            )
    if new_shards:
        Shard.objects.bulk_create(new_shards, ignore_conflicts=True)


def stream_sync_shards(*, stream_id: int) -> bool:
    """Create and close Shard rows to match DescribeStream. Returns False when DynamoDB could
    not be asked, after recording why on the source."""
    stream = Stream.objects.select_related("source").get(pk=stream_id)
    client = aws.streams_client(region=stream.source.region, endpoint_url=stream.source.endpoint_url)
    try:
        described, stream_status = _describe_all_shards(client, stream.arn)
    except aws.AWS_ERRORS as exc:
        return _describe_failed(stream=stream, exc=exc)
    _shards_record(stream=stream, described=described)

    if stream.state == Stream.State.SUPERSEDED and stream_status in {"DISABLED", ""}:
        # A disabled stream gets no new shards; once every shard is read, it is done.
        if not Shard.objects.filter(stream=stream).exclude(state=Shard.State.FINISHED).exists():
            Stream.objects.filter(pk=stream.pk).update(state=Stream.State.DRAINED)
    return True


@dataclass(frozen=True)
class ChildShards:
    """What shard_children_discover found."""

    # The shard's children as DynamoDB names them, each now a Shard row; empty when it has none
    # yet (a shard can end a little before its children are listed).
    shard_ids: tuple[str, ...] = ()
    # True when the endpoint could not filter, so the whole stream was listed (stream_sync_shards)
    # instead: every new shard found then has its row, not only the children.
    listed_stream: bool = False
    # False when DynamoDB could not be asked; why is on the source, as stream_sync_shards leaves it.
    healthy: bool = True


def shard_children_discover(*, shard_id: int) -> ChildShards:
    """Find the children of a shard that has ended (`shard_id` is the Shard row's pk) and create
    their Shard rows, as stream_sync_shards creates rows.

    One DescribeStream call with ShardFilter {"Type": "CHILD_SHARDS", "ShardId": <the shard's
    id>} (API reference, DynamoDB Streams, DescribeStream and ShardFilter: "the shardId of the
    parent shard for which you are requesting child shards"), rather than listing every shard of
    the stream, 100 a call, each time one of them ends.

    Where the endpoint cannot filter, this falls back to stream_sync_shards: when the parameter
    is refused (botocore refuses it client-side when its model predates ShardFilter; an
    endpoint may answer a 400 we do not know), or when the answer holds a shard that is not a
    child of this one, or a next page: DynamoDB Local before 3.2.0 ignores the filter and
    answers with the stream's full listing, this shard in it. An answer with no shards is a
    shard without children (yet). Throttling, denial, an unreachable endpoint or a stream that
    is gone are recorded as stream_sync_shards records them, and give healthy=False.

    The children's rows are readable only once this shard is FINISHED (Shard.objects.readable),
    so a parent is still read to its end before its children start. A shard of a superseded
    stream is always answered with the full listing, which marks the stream drained once every
    shard of it is read.
    """
    shard = Shard.objects.select_related("stream__source").get(pk=shard_id)
    stream = shard.stream
    if stream.state != Stream.State.CURRENT:
        # A superseded stream gets no new shards; the full listing is what marks it drained
        # once its last shard is read, so that the source's current stream can start.
        return _children_listed(shard=shard)
    client = aws.streams_client(region=stream.source.region, endpoint_url=stream.source.endpoint_url)
    try:
        description = client.describe_stream(
            StreamArn=stream.arn, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": shard.shard_id}
        )["StreamDescription"]
    except aws.AWS_ERRORS as exc:
        if aws.classify(exc) is not aws.Failure.OTHER:
            return ChildShards(healthy=_describe_failed(stream=stream, exc=exc))
        log.info("DescribeStream refused ShardFilter (%s); listing the stream instead", aws.describe(exc))
        return _children_listed(shard=shard)
    described = description.get("Shards", [])
    not_filtered = any(item.get("ParentShardId") != shard.shard_id for item in described)
    if not_filtered or description.get("LastEvaluatedShardId"):
        return _children_listed(shard=shard)
    _shards_record(stream=stream, described=described)
    return ChildShards(shard_ids=tuple(item["ShardId"] for item in described))


def _children_listed(*, shard: Shard) -> ChildShards:
    healthy = stream_sync_shards(stream_id=shard.stream_id)
    children = Shard.objects.filter(stream_id=shard.stream_id, parent_shard_id=shard.shard_id).order_by("id")
    return ChildShards(
        shard_ids=tuple(children.values_list("shard_id", flat=True)), listed_stream=True, healthy=healthy
    )


def stream_mark_gone(*, stream_id: int, reason: str) -> None:
    """The stream no longer exists: its unread shards are a gap, and the stream is done."""
    stream = Stream.objects.select_related("source").get(pk=stream_id)
    now = timezone.now()
    with transaction.atomic():
        for shard in Shard.objects.filter(stream=stream).exclude(state=Shard.State.FINISHED):
            Gap.objects.create(
                source=stream.source, shard=shard, after_sequence_number=shard.checkpoint, reason=reason
            )
            # Counted once committed, as every gap is (streams.ingest.records_save).
            transaction.on_commit(
                lambda: meter_count(name="shardwatch_gaps_total", labels={"source": stream.source_id}), robust=True
            )
        Shard.objects.filter(stream=stream).exclude(state=Shard.State.FINISHED).update(
            state=Shard.State.FINISHED, finished_at=now, lease_owner="", lease_expires_at=None
        )
        Stream.objects.filter(pk=stream.pk).update(state=Stream.State.DRAINED)
        if stream.state == Stream.State.CURRENT:
            source_set_status(source_id=stream.source_id, status=StreamSource.Status.STREAM_GONE, error=reason)

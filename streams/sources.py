"""Stream sources: validating a table against DynamoDB, registering it, and keeping its
streams and shards in step with DescribeTable and DescribeStream."""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

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


def stream_sync_shards(*, stream_id: int) -> bool:
    """Create and close Shard rows to match DescribeStream. Returns False when DynamoDB could
    not be asked, after recording why on the source."""
    stream = Stream.objects.select_related("source").get(pk=stream_id)
    source = stream.source
    client = aws.streams_client(region=source.region, endpoint_url=source.endpoint_url)
    try:
        described, stream_status = _describe_all_shards(client, stream.arn)
    except aws.AWS_ERRORS as exc:
        failure = aws.classify(exc)
        if failure is aws.Failure.NOT_FOUND:
            stream_mark_gone(stream_id=stream.pk, reason=f"Stream deleted: {aws.describe(exc)}")
            return stream.state != Stream.State.CURRENT
        status = StreamSource.Status.after_failure(failure)
        source_set_status(source_id=source.pk, status=status, error=f"DescribeStream failed: {aws.describe(exc)}")
        return False

    known = {shard.shard_id: shard for shard in stream.shards.all()}
    # A source that starts at LATEST skips what is already in the stream, but only the first
    # time we see it: shards that appear later (splits, a re-enabled stream) are new data.
    first_sight = not known and source.start_position == StreamSource.StartPosition.LATEST and not (
        Shard.objects.filter(stream__source=source).exists()
    )
    new_shards = []
    for item in described:
        ending = item.get("SequenceNumberRange", {}).get("EndingSequenceNumber", "")
        existing = known.get(item["ShardId"])
        if existing is None:
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
        elif ending and not existing.ending_sequence_number:
            Shard.objects.filter(pk=existing.pk).update(ending_sequence_number=ending)
            Shard.objects.filter(pk=existing.pk, state=Shard.State.OPEN).update(state=Shard.State.CLOSED)
    if new_shards:
        Shard.objects.bulk_create(new_shards, ignore_conflicts=True)

    if stream.state == Stream.State.SUPERSEDED and stream_status in {"DISABLED", ""}:
        # A disabled stream gets no new shards; once every shard is read, it is done.
        if not Shard.objects.filter(stream=stream).exclude(state=Shard.State.FINISHED).exists():
            Stream.objects.filter(pk=stream.pk).update(state=Stream.State.DRAINED)
    return True


def stream_mark_gone(*, stream_id: int, reason: str) -> None:
    """The stream no longer exists: its unread shards are a gap, and the stream is done."""
    stream = Stream.objects.select_related("source").get(pk=stream_id)
    now = timezone.now()
    with transaction.atomic():
        for shard in Shard.objects.filter(stream=stream).exclude(state=Shard.State.FINISHED):
            Gap.objects.create(
                source=stream.source, shard=shard, after_sequence_number=shard.checkpoint, reason=reason
            )
        Shard.objects.filter(stream=stream).exclude(state=Shard.State.FINISHED).update(
            state=Shard.State.FINISHED, finished_at=now, lease_owner="", lease_expires_at=None
        )
        Stream.objects.filter(pk=stream.pk).update(state=Stream.State.DRAINED)
        if stream.state == Stream.State.CURRENT:
            source_set_status(source_id=stream.source_id, status=StreamSource.Status.STREAM_GONE, error=reason)

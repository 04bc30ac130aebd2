"""Turning GetRecords output into ChangeRecord rows, and saving a batch with its checkpoint."""

import logging

from django.db import transaction
from django.utils import timezone

from streams import codec
from streams.diff import record_diff
from streams.models import ChangeRecord, Gap, Shard, digest_item_key, sequence_key
from streams.push import batch_publish

log = logging.getLogger(__name__)

TTL_PRINCIPAL = "dynamodb.amazonaws.com"


def change_record_build(*, record: dict, source_id: int, shard_id: int, received_at) -> ChangeRecord:
    """One stream record, as boto3 returns it, to an unsaved ChangeRecord.

    Images are kept as typed DynamoDB JSON with binary re-encoded as base64, exactly as the
    stream sent them. A record we cannot decode is still kept, with the reason, so that
    nothing is lost and the shard moves on.
    """
    data = record["dynamodb"]
    sequence_number = data["SequenceNumber"]
    keys = codec.wire_item_from_botocore(data.get("Keys") or {})
    view_type = data.get("StreamViewType", "")
    event_name = record.get("eventName", "")
    identity = record.get("userIdentity")
    change = ChangeRecord(
        source_id=source_id,
        shard_id=shard_id,
        sequence_number=sequence_number,
        sequence_key=sequence_key(sequence_number),
        event_id=record.get("eventID", ""),
        event_name=event_name,
        event_version=record.get("eventVersion", ""),
        approximate_creation_time=data.get("ApproximateCreationDateTime") or received_at,
        size_bytes=data.get("SizeBytes", 0),
        view_type=view_type,
        keys=keys,
        item_key="",
        item_hash="",
        user_identity=identity,
        is_ttl_delete=bool(identity)
        and identity.get("Type") == "Service"
        and identity.get("PrincipalId") == TTL_PRINCIPAL,
        received_at=received_at,
    )
    try:
        change.old_image = codec.wire_item_from_botocore(data["OldImage"]) if "OldImage" in data else None
        change.new_image = codec.wire_item_from_botocore(data["NewImage"]) if "NewImage" in data else None
        change.item_key = codec.item_key(keys)
        change.diff, change.diff_complete = record_diff(
            event_name=event_name, view_type=view_type, old_image=change.old_image, new_image=change.new_image
        )
        if event_name not in ChangeRecord.EventName.values:
            raise ValueError(f"unknown eventName {event_name!r}")
    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the shard
        log.exception("could not decode record %s", sequence_number)
        change.decode_error = f"{type(exc).__name__}: {exc}"
        change.diff, change.diff_complete = [], False
        change.item_key = change.item_key or repr(data.get("Keys"))
        change.old_image = change.old_image if _is_json(change.old_image) else None
        change.new_image = change.new_image if _is_json(change.new_image) else None
    change.item_hash = digest_item_key(change.item_key)
    return change


def _is_json(value) -> bool:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def records_build(*, records: list[dict], shard: Shard, received_at) -> list[ChangeRecord]:
    rows = []
    for record in records:
        try:
            rows.append(
                change_record_build(
                    record=record, source_id=shard.stream.source_id, shard_id=shard.pk, received_at=received_at
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            # Without a sequence number a record cannot be stored or ordered; say so on the
            # source rather than stall the shard behind it.
            log.error("unusable stream record on shard %s: %r", shard.shard_id, exc)
            Gap.objects.create(
                source_id=shard.stream.source_id,
                shard=shard,
                after_sequence_number=rows[-1].sequence_number if rows else shard.checkpoint,
                reason=f"A stream record without a usable sequence number was skipped ({type(exc).__name__}: {exc}).",
            )
    return rows


def records_save(*, shard: Shard, owner: str, records: list[dict], finished: bool) -> int | None:
    """Save one GetRecords batch and advance the shard's checkpoint in one transaction.

    Returns how many records the batch held, or None when the lease is no longer ours (then
    nothing is written).
    """
    received_at = timezone.now()
    rows = records_build(records=records, shard=shard, received_at=received_at)
    if not rows and not finished:
        return 0
    updates = {}
    if rows:
        updates.update(
            checkpoint=rows[-1].sequence_number, last_record_at=received_at, resume_iterator="", resume_iterator_at=None
        )
    if finished:
        updates.update(state=Shard.State.FINISHED, finished_at=received_at)
    with transaction.atomic():
        if rows:
            # A record read twice (after a crash, or a reset checkpoint) conflicts on
            # (shard, sequence_number) and is not stored again. Updating one unchanged column
            # on conflict makes the database return the existing row's id.
            ChangeRecord.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["shard", "sequence_number"],
                update_fields=["event_id"],
            )
        moved = Shard.objects.filter(pk=shard.pk, lease_owner=owner).update(**updates)
        if moved != 1:
            transaction.set_rollback(True)
            return None
        if rows:
            source = shard.stream.source
            transaction.on_commit(lambda: batch_publish(source=source, records=rows))
    return len(rows)

"""Turning GetRecords output into ChangeRecord rows, and saving a batch with its checkpoint.

This is the hot path of every worker. Rows are plain dicts keyed by ChangeRecord's column
names (and the JSON text of their images, written once), and a batch goes to the database
as one JSON parameter expanded by the database itself (jsonb_to_recordset on PostgreSQL,
json_each on SQLite): one statement per batch, with no per-row ORM objects and no per-value
quoting in Python.
"""

import json
import logging
from datetime import UTC, datetime

import orjson
import psycopg

from django.db import DataError, connection, transaction
from django.utils import timezone

from meters.store import meter_count
from streams import codec, shapes
from streams.diff import record_diff
from streams.lag import MINUTE_STEP_S, iterator_age_s, record_time_step_s, record_times_look_rounded
from streams.models import (
    PARTITION_KEY_INDEXED,
    ChangeRecord,
    Gap,
    Shard,
    StreamSource,
    digest_item_key,
    sequence_key,
)
from streams.push import batch_publish
from streams.signals import batch_saved

log = logging.getLogger(__name__)

TTL_PRINCIPAL = "dynamodb.amazonaws.com"
EVENT_NAMES = frozenset(ChangeRecord.EventName.values)


def change_record_row(*, record: dict, source_id: int, shard_id: int, hash_key: str, received_at) -> dict:
    """One stream record, as boto3 returns it, to a row for the change record table.

    `record` is as the service sent it (see streams.aws): Keys and images are stored as that
    typed DynamoDB JSON, binary as base64, except that a value in a shape AWS never sends
    (DynamoDB Local's {} for an empty map) is stored in AWS's shape, so that everything built
    from the stored text (Lambda events, patterns, pages) sees what it would see on AWS. The
    images as the stream sent them are then kept in "images_as_sent", and values that cannot
    be put into AWS's shape are kept as sent and named in "shape_error" (see
    shapes.image_reshape). A record we cannot decode is still kept, with the reason, so that
    nothing is lost and the shard moves on. Raises only when the record has no usable
    sequence number, since then it cannot be stored at all.
    """
    data = record["dynamodb"]
    sequence_number = data["SequenceNumber"]
    identity = record.get("userIdentity")
    event_name = record.get("eventName", "")
    view_type = data.get("StreamViewType", "")
    row = {
        "source_id": source_id,
        "shard_id": shard_id,
        "sequence_number": sequence_number,
        "sequence_key": sequence_key(sequence_number),
        "event_id": record.get("eventID", ""),
        "event_name": event_name,
        "event_version": record.get("eventVersion", ""),
        "approximate_creation_time": _timestamp(data.get("ApproximateCreationDateTime")) or received_at,
        "size_bytes": data.get("SizeBytes", 0),
        "view_type": view_type,
        "keys": data.get("Keys") or {},
        "old_image": data.get("OldImage"),
        "new_image": data.get("NewImage"),
        "item_key": "",
        "partition_key": "",
        "changed_paths": "",
        "diff": [],
        "diff_complete": False,
        "user_identity": identity,
        "is_ttl_delete": bool(identity)
        and identity.get("Type") == "Service"
        and identity.get("PrincipalId") == TTL_PRINCIPAL,
        "received_at": received_at,
        "decode_error": "",
        "images_as_sent": None,
        "shape_error": "",
    }
    _images_reshape(row)
    try:
        row["item_key"] = codec.item_key(row["keys"])
        if event_name not in EVENT_NAMES:
            raise ValueError(f"unknown eventName {event_name!r}")
        row["diff"], row["diff_complete"] = record_diff(
            event_name=event_name, view_type=view_type, old_image=row["old_image"], new_image=row["new_image"]
        )
        if row["diff"]:
            row["changed_paths"] = "\n" + "\n".join(change["path"] for change in row["diff"]) + "\n"
        hash_value = row["keys"].get(hash_key)
        if hash_value is not None:
            # The NUL stand-in before the cut, so that a filter's key, escaped the same way
            # (streams.feed), is cut at the same place.
            row["partition_key"] = codec.nul_escape(text=str(codec.to_display(hash_value)))[:PARTITION_KEY_INDEXED]
    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the shard
        # The type only: the message may quote item data (a value, a name), which logs must not carry.
        log.warning("could not decode record %s: %s", sequence_number, type(exc).__name__)
        row["decode_error"] = codec.nul_escape(text=f"{type(exc).__name__}: {exc}")
        row["diff"], row["diff_complete"] = [], False
        row["item_key"] = row["item_key"] or _json_or_repr(data.get("Keys"))
        for image in ("keys", "old_image", "new_image"):
            if not _is_json(row[image]):
                row[image] = {"unreadable": repr(row[image])}
    row["item_hash"] = digest_item_key(row["item_key"])
    return row


_IMAGES = (("keys", "Keys"), ("old_image", "OldImage"), ("new_image", "NewImage"))
_LONE_M_OR_L = ({"M": {}}, {"L": []})
# Where a row keeps the JSON text _images_reshape wrote of its images, {column: (image, text)},
# for the insert, which would write the same text again. Not a column.
_TEXT = "_json_text"


def _untyped_maybe(image, text: bytes) -> bool:
    """Whether an image whose compact JSON text (as orjson writes it) holds a "{}" or "[]" may
    hold an empty map or list without its type tag.

    In AWS's shape the only JSON object or array that can be empty is the inner one of an
    empty M or L, so every "{}" and "[]" outside strings is part of a {"M":{}} or {"L":[]}, and
    when the counts agree nothing is untyped. One spelling hides among them: a map whose only
    member is named M (or L) and holds an untyped {} (or []) reads {"M":{}} (or {"L":[]}) as
    well. As the inner map of an M it follows "M":, which is searched for; as a whole image it
    is compared. A "{}" or "[]" inside a string only costs a walk that changes nothing.
    """
    return (
        text.count(b"{}") != text.count(b'{"M":{}}')
        or text.count(b"[]") != text.count(b'{"L":[]}')
        or text.find(b'"M":{"M":{}}') >= 0
        or text.find(b'"M":{"L":[]}') >= 0
        or image in _LONE_M_OR_L
    )


def _images_reshape(row: dict) -> None:
    """Put the row's Keys and images into AWS's shape (shapes.image_reshape), keeping what the
    stream sent of any that changed in images_as_sent and naming what could not be typed in
    shape_error.

    Only an untyped empty collection, {} or [], can be put into a typed form, and an image's
    JSON text shows whether it may hold one (_untyped_maybe): an image that cannot, as every
    image AWS sends, is not walked, and its text is kept for the insert. That costs a few
    microseconds a record; walking every image in Python instead doubled the CPU time of
    building rows on the `make bench` workload. So a value in no typed form that cannot be
    typed is named only in an image that is walked (one holding an empty set, {"SS":[]},
    always is); no source is known to send one, and it is stored as sent either way.
    """
    texts = {}
    sent = {}
    problems = []
    for column, name in _IMAGES:
        image = row[column]
        if image is None:
            continue
        if type(image) is dict:
            try:
                text = orjson.dumps(image)
            except TypeError:
                text = b"{}"  # orjson cannot write it: the walk says what is wrong
            # find() rather than `in`, measurably quicker on bytes: this runs for every image.
            if (text.find(b"{}") < 0 and text.find(b"[]") < 0) or not _untyped_maybe(image, text):
                texts[column] = (image, text)
                continue
        shaped, found = shapes.image_reshape(image=image, name=name)
        if shaped is not image:
            sent[name] = image
            row[column] = shaped
        problems += found
    row[_TEXT] = texts
    if sent:
        row["images_as_sent"] = sent
    if problems:
        # How many, not which: a problem names its path, and paths are item data (attribute names).
        log.warning("record %s has %s values in no DynamoDB typed form", row["sequence_number"], len(problems))
        row["shape_error"] = codec.nul_escape(text="\n".join(problems))


def _timestamp(value):
    """Epoch seconds as the stream sends them; a datetime where something parsed them already."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value), tz=UTC)


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _json_or_repr(value) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def records_build(*, records: list[dict], shard: Shard, received_at) -> tuple[list[dict], list[Gap]]:
    """The rows to insert for a GetRecords batch, and a gap (unsaved) for each record that
    cannot be stored. The caller saves the gaps with the rows, under the shard's lease."""
    rows, gaps = [], []
    source = shard.stream.source
    hash_key = source.key_schema[0] if source.key_schema else ""
    for record in records:
        try:
            rows.append(
                change_record_row(
                    record=record, source_id=source.pk, shard_id=shard.pk, hash_key=hash_key, received_at=received_at
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            # Without a sequence number a record cannot be stored or ordered; say so on the
            # source rather than stall the shard behind it.
            # The type only, in the log and on the gap: the message may quote item data.
            log.error("unusable stream record on shard %s: %s", shard.shard_id, type(exc).__name__)
            gaps.append(Gap(
                source_id=source.pk,
                shard=shard,
                after_sequence_number=rows[-1]["sequence_number"] if rows else shard.checkpoint,
                reason=f"A stream record without a usable sequence number was skipped ({type(exc).__name__}).",
            ))
    return rows, gaps


_COLUMNS = [
    ("source_id", "bigint"),
    ("shard_id", "bigint"),
    ("sequence_number", "text"),
    ("sequence_key", "text"),
    ("event_id", "text"),
    ("event_name", "text"),
    ("event_version", "text"),
    ("approximate_creation_time", "timestamptz"),
    ("size_bytes", "integer"),
    ("view_type", "text"),
    ("keys", "json"),
    ("old_image", "json"),
    ("new_image", "json"),
    ("item_key", "text"),
    ("item_hash", "text"),
    ("partition_key", "text"),
    ("changed_paths", "text"),
    ("diff", "json"),
    ("diff_complete", "boolean"),
    ("user_identity", "jsonb"),
    ("is_ttl_delete", "boolean"),
    ("received_at", "timestamptz"),
    ("decode_error", "text"),
    ("images_as_sent", "json"),
    ("shape_error", "text"),
]
_NAMES = ", ".join(name for name, _ in _COLUMNS)
_TABLE = ChangeRecord._meta.db_table

# A record read twice (after a crash, or from an older checkpoint) conflicts on
# (shard, sequence_key) and is skipped; RETURNING names only the rows that are new. The JSON
# columns arrive as strings holding their JSON text, cast after: json_to_recordset turns every
# string it parses into text, nested ones too, and text cannot hold the U+0000 that an image's
# \u0000 stands for (streams.codec.NUL_STAND_IN), while the text "\u0000" casts to json as it is.
_INSERT_POSTGRES = f"""
    INSERT INTO {_TABLE} ({_NAMES})
    SELECT {", ".join(f"{name}::{kind}" if kind in ("json", "jsonb") else name for name, kind in _COLUMNS)}
    FROM json_to_recordset(%s::json)
        AS r({", ".join(f"{name} {'text' if kind in ('json', 'jsonb') else kind}" for name, kind in _COLUMNS)})
    ORDER BY sequence_key
    ON CONFLICT (shard_id, sequence_key) DO NOTHING
    RETURNING id, sequence_number
"""
_INSERT_SQLITE = f"""
    INSERT INTO {_TABLE} ({_NAMES})
    SELECT {", ".join(f"json_extract(value, '$.{name}')" for name, _ in _COLUMNS)}
    FROM json_each(%s) WHERE true
    ORDER BY json_extract(value, '$.sequence_key')
    ON CONFLICT (shard_id, sequence_key) DO NOTHING
    RETURNING id, sequence_number
"""


def _json_text(row: dict, name: str, value) -> bytes:
    """JSON text of a row's column value: what _images_reshape wrote, while it is still the value."""
    known = row.get(_TEXT, {}).get(name)
    return known[1] if known is not None and known[0] is value else orjson.dumps(value)


def _payload_row(row: dict) -> dict:
    """The row's columns for a JSON payload, with the image text already written spliced in."""
    payload = {name: row[name] for name, _ in _COLUMNS}
    for name, _ in _IMAGES:
        if payload[name] is not None:
            payload[name] = orjson.Fragment(_json_text(row, name, payload[name]))
    return payload


def _postgres_payload_row(row: dict) -> dict:
    """The row's columns for _INSERT_POSTGRES: JSON columns as strings holding their JSON text."""
    payload = {name: row[name] for name, _ in _COLUMNS}
    for name, kind in _COLUMNS:
        if kind in ("json", "jsonb") and payload[name] is not None:
            payload[name] = _json_text(row, name, payload[name]).decode()
    return payload


def _sqlite_payload(rows: list[dict]) -> str:
    # Django keeps datetimes in SQLite as naive UTC text.
    adapt = connection.ops.adapt_datetimefield_value
    return orjson.dumps(
        [
            {
                **_payload_row(row),
                "approximate_creation_time": adapt(row["approximate_creation_time"]),
                "received_at": adapt(row["received_at"]),
            }
            for row in rows
        ]
    ).decode()


_COPY_POSTGRES = f"COPY {_TABLE} ({_NAMES}) FROM STDIN"
_JSON_COLUMNS = [(index, name) for index, (name, kind) in enumerate(_COLUMNS) if kind in ("json", "jsonb")]


def _copy_values(row: dict) -> list:
    values = [row[name] for name, _ in _COLUMNS]
    texts = row.get(_TEXT, {})
    for index, name in _JSON_COLUMNS:
        value = values[index]
        if value is not None:
            # _json_text, inlined: this runs for every JSON column of every record.
            known = texts.get(name)
            values[index] = (known[1] if known is not None and known[0] is value else orjson.dumps(value)).decode()
    return values


def _insert_postgres(rows: list[dict]) -> dict[str, int]:
    with connection.cursor() as cursor:
        try:
            # COPY is the fastest way in, but it cannot skip rows already stored. Records are
            # read twice only after a crash or a reset checkpoint, so try COPY and fall back to
            # the conflict-aware INSERT when it meets one.
            with transaction.atomic():
                with cursor.cursor.copy(_COPY_POSTGRES) as copy:
                    for row in rows:
                        copy.write_row(_copy_values(row))
        except psycopg.errors.UniqueViolation:
            cursor.execute(_INSERT_POSTGRES, [orjson.dumps([_postgres_payload_row(row) for row in rows]).decode()])
            return {sequence_number: pk for pk, sequence_number in cursor.fetchall()}
        cursor.execute(
            f"SELECT id, sequence_number FROM {_TABLE} WHERE shard_id = %s AND sequence_key BETWEEN %s AND %s",
            [rows[0]["shard_id"], rows[0]["sequence_key"], rows[-1]["sequence_key"]],
        )
        return {sequence_number: pk for pk, sequence_number in cursor.fetchall()}


def _insert_sqlite(rows: list[dict]) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQLITE, [_sqlite_payload(rows)])
        return {sequence_number: pk for pk, sequence_number in cursor.fetchall()}


def records_insert(rows: list[dict]) -> list[dict]:
    """Insert one shard's rows, in sequence order, skipping any already stored. Returns the
    rows that are new, with their ids."""
    if connection.vendor == "postgresql":
        inserted = _insert_postgres(rows)
    elif connection.vendor == "sqlite":
        inserted = _insert_sqlite(rows)
    else:
        raise NotImplementedError(f"no batch insert for {connection.vendor}; use PostgreSQL or SQLite")
    fresh = []
    for row in rows:
        pk = inserted.get(row["sequence_number"])
        if pk is not None:
            fresh.append({**row, "id": pk})
    return fresh


# A row whose values the database or the JSON writer refuses: a text too long for its column, a
# string PostgreSQL cannot hold, one orjson cannot write (a lone surrogate). Not the errors of a
# database that is unreachable or busy: those are retried from the checkpoint, as they should be.
# (COPY runs on psycopg's own cursor, whose errors Django does not wrap.)
_UNSTORABLE = (DataError, psycopg.DataError, TypeError, ValueError)
_TEXT_LIMITS = {
    **{name: ChangeRecord._meta.get_field(name).max_length for name, kind in _COLUMNS if kind == "text"},
    "partition_key": PARTITION_KEY_INDEXED,
}


def _records_insert_kept(rows: list[dict]) -> list[dict]:
    """records_insert, where a batch the database refuses is inserted a row at a time, and a
    row it refuses is inserted as row_kept makes it: a record that cannot be stored as read is
    stored flagged rather than stalling its shard, which would read the same batch forever."""
    try:
        with transaction.atomic():
            return records_insert(rows)
    except _UNSTORABLE as exc:
        # The type only: a database's message quotes the row it refused, item data included.
        log.warning(
            "shard %s: a batch of %s records (sequence numbers %s to %s) could not be stored as read (%s); "
            "storing them one at a time",
            rows[0]["shard_id"], len(rows), rows[0]["sequence_number"], rows[-1]["sequence_number"], type(exc).__name__,
        )
    fresh = []
    for row in rows:
        try:
            with transaction.atomic():
                fresh += records_insert([row])
        except _UNSTORABLE as exc:
            log.error(
                "record %s could not be stored as read (%s); stored with what was refused as text, see its decode_error",
                row["sequence_number"], type(exc).__name__,
            )
            fresh += records_insert([row_kept(row=row, error=exc)])
    return fresh


def row_kept(*, row: dict, error: Exception) -> dict:
    """What is stored of a row (change_record_row) that the database or the JSON writer refused
    (`error`): the same record, flagged in decode_error, with its diff left out (a diff that
    could not be stored says nothing reliable) and each refused value in a form that is stored:

    - text columns: U+0000 as codec.NUL_STAND_IN, unpaired surrogates as \\udXXX, cut to the
      column's length;
    - JSON columns (the images): kept if orjson can write them (the json type takes any text it
      writes); otherwise {"unreadable": <their Python repr, ASCII only>}, as change_record_row
      keeps images it cannot read.

    The item key is recomputed into item_hash from what is kept, so the record still has an item
    history (of its own, if its key had to change)."""
    kept = {**row, _TEXT: {}}
    for name, limit in _TEXT_LIMITS.items():
        kept[name] = _text_kept(kept[name], limit=limit)
    for name, kind in _COLUMNS:
        if kind in ("json", "jsonb") and kept[name] is not None:
            kept[name] = _json_kept(kept[name], kind=kind)
    size = kept["size_bytes"]
    kept["size_bytes"] = min(max(size, 0), 2**31 - 1) if type(size) is int else 0
    kept["diff"], kept["diff_complete"], kept["changed_paths"] = [], False, ""
    reason = f"Could not be stored as read ({type(error).__name__}); what was refused is kept as text, and no diff."
    kept["decode_error"] = f"{reason}\n{kept['decode_error']}" if kept["decode_error"] else reason
    kept["item_hash"] = digest_item_key(kept["item_key"])
    return kept


def _text_kept(value, *, limit: int | None) -> str:
    text = value if type(value) is str else str(value)
    text = codec.nul_escape(text=text.encode("utf-8", "backslashreplace").decode("utf-8"))
    return text[:limit] if limit else text


def _json_kept(value, *, kind: str):
    try:
        text = orjson.dumps(value)
    except TypeError:
        return {"unreadable": ascii(value)}
    # jsonb refuses \u0000 where json takes it (PostgreSQL docs, "JSON Types").
    return _nul_free(value) if kind == "jsonb" and b"\\u0000" in text else value


def _nul_free(value):
    if type(value) is str:
        return codec.nul_escape(text=value)
    if type(value) is dict:
        return {codec.nul_escape(text=name): _nul_free(member) for name, member in value.items()}
    if type(value) is list:
        return [_nul_free(member) for member in value]
    return value


def records_save(*, shard: Shard, owner: str, records: list[dict], finished: bool) -> int | None:
    """Save one GetRecords batch and advance the shard's checkpoint in one transaction.

    Returns how many records the batch held, or None when the lease is no longer ours (then
    nothing is written). A batch that saves anything (records, gaps, the shard's end) also
    writes the shard's last_polled_at, in the same UPDATE. Once the batch has committed, its new records and gaps are counted
    (meters), pushed to the source's Channels group and announced with
    streams.signals.batch_saved, and `shard` (the
    reader's copy of the row) carries the checkpoint and state that were written.
    """
    received_at = timezone.now()
    rows, gaps = records_build(records=records, shard=shard, received_at=received_at)
    if not rows and not gaps and not finished:
        return 0
    # A poll that saved something is a poll: its time goes in the batch's own UPDATE, so the
    # shard's last poll is never older than its last record received (lease renewals write it
    # for the polls that saved nothing, streams.reader).
    updates = {"last_polled_at": received_at}
    source = shard.stream.source
    step_s = _record_time_step(source=source, rows=rows)
    if rows:
        updates.update(
            checkpoint=rows[-1]["sequence_number"], last_record_at=received_at, resume_iterator="", resume_iterator_at=None,
            iterator_age_s=iterator_age_s(
                read_at=received_at, newest_at=max(row["approximate_creation_time"] for row in rows), step_s=step_s
            ),
            iterator_age_at=received_at,
        )
    if finished:
        updates.update(state=Shard.State.FINISHED, finished_at=received_at)
    with transaction.atomic():
        fresh = _records_insert_kept(rows) if rows else []
        # Conditional on the lease (a batch of unusable records only included): the gaps are
        # written only while the lease is ours, as records are.
        moved = Shard.objects.filter(pk=shard.pk, lease_owner=owner).update(**updates)
        if moved != 1:
            transaction.set_rollback(True)
            return None
        Gap.objects.bulk_create(gaps)
        # Counted once committed: a COMMIT that fails is followed by reading the batch again
        # from the checkpoint, which must not count it twice.
        if gaps:
            transaction.on_commit(
                lambda: meter_count(name="shardwatch_gaps_total", labels={"source": source.pk}, value=len(gaps)),
                robust=True,
            )
        for field, value in updates.items():
            setattr(shard, field, value)
        if fresh:
            record_ids = [row["id"] for row in fresh]
            transaction.on_commit(
                lambda: meter_count(
                    name="shardwatch_records_read_total", labels={"source": source.pk}, value=len(fresh), at=received_at
                ),
                robust=True,
            )
            # Where record times are rounded to the minute, a record counts from when it was received.
            oldest_at = received_at if step_s >= MINUTE_STEP_S else min(row["approximate_creation_time"] for row in fresh)
            # Robust: the batch is committed by then, and a push or a trigger kick that fails (a
            # Redis blip) is logged, not raised into the reader that holds hundreds of shards.
            # Live pages fetch what they missed; the trigger dispatcher runs every two seconds.
            transaction.on_commit(lambda: batch_publish(source=source, rows=fresh), robust=True)
            transaction.on_commit(
                lambda: batch_saved.send(
                    sender=ChangeRecord, source_id=source.pk, shard_id=shard.pk, record_ids=record_ids, oldest_at=oldest_at
                ),
                robust=True,
            )
    return len(rows)


def _record_time_step(*, source: StreamSource, rows: list[dict]) -> int:
    """The source's record-time step (streams.lag), learning from `rows` that its times are
    rounded to the minute: written once, the first time a batch shows it."""
    step_s = record_time_step_s(source=source)
    if step_s < MINUTE_STEP_S and record_times_look_rounded(times=[row["approximate_creation_time"] for row in rows]):
        StreamSource.objects.filter(pk=source.pk).update(record_time_step_s=MINUTE_STEP_S)
        source.record_time_step_s = step_s = MINUTE_STEP_S
        log.info("source %s: record times are rounded to the minute; lag is from receive and poll times", source.pk)
    return step_s

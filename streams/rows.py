"""Read-side rows: what the pages, the JSON API, the live push and the export show of stored
change records. One function per kind of row; each takes records (or ingest rows) and returns
plain JSON-ready dicts, so every reader of a record sees the same names and values.

Images stay out of feed rows: a feed row is what a list needs, and the images (up to 400 KB each)
reach a browser only when one record is opened. Nothing here queries the database beyond what
the caller selected (streams.records does the reading), and nothing here knows a URL: callers
that link (the dashboard) pass their links in.
"""

from streams import codec
from streams.diff import summarize
from streams.masking import CHANGES_REMOVED

# What a feed row needs; the images stay in the database until a record is opened.
FEED_FIELDS = (
    "id", "source_id", "shard_id", "event_name", "keys", "item_key", "partition_key", "diff", "diff_complete",
    "approximate_creation_time", "sequence_number", "is_ttl_delete", "decode_error", "size_bytes",
)


def _key_names(keys: dict, key_schema: list[str]) -> list[str]:
    # The key schema's order (hash key first), then any others by name.
    return [name for name in key_schema if name in keys] + sorted(set(keys) - set(key_schema))


def key_display(*, keys: dict, key_schema: list[str]) -> str:
    """`pk=ORDER#1 · sk=2024` in key-schema order; for people, never for look-ups."""
    return " · ".join(f"{name}={_scalar(codec.to_display(keys[name]))}" for name in _key_names(keys, key_schema))


def _scalar(value) -> str:
    return value if isinstance(value, str) else str(value)


def key_parts(*, keys: dict, key_schema: list[str]) -> list[tuple[str, str, object]]:
    """(name, type tag, value) of each key attribute, hash key first: the record page's keys."""
    return [(name, *codec.typed_entry(keys[name])) for name in _key_names(keys, key_schema)]


def feed_row(row: dict, *, source) -> dict:
    """What one row of the live feed needs; images stay on the server.

    `row` holds ChangeRecord's column values by name, with "id": an ingest row, or
    model_to_dict-like values of a saved record (record_as_row).
    """
    return {
        "id": row["id"],
        "source_id": source.pk,
        "table": source.table_name,
        "event_name": row["event_name"],
        "key": key_display(keys=row["keys"], key_schema=source.key_schema),
        "item_key": row["item_key"],
        "partition_key": row["partition_key"],
        "summary": _summary(diff=row["diff"], complete=row["diff_complete"], removed=row.get("changes_removed", False)),
        "diff_complete": row["diff_complete"],
        "paths": sorted({change["path"] for change in row["diff"]}),
        "approximate_creation_time": row["approximate_creation_time"].isoformat(),
        "sequence_number": row["sequence_number"],
        "is_ttl_delete": row["is_ttl_delete"],
        "decode_error": row["decode_error"],
    }


def _summary(*, diff: list, complete: bool, removed: bool) -> str:
    if not complete:
        return ""
    return summarize(diff) or (CHANGES_REMOVED if removed else "")


def record_as_row(record) -> dict:
    """A saved record as the row dict feed_row takes. Needs only FEED_FIELDS loaded; a masked
    copy (streams.masking) also says whether masking removed every change."""
    return {**{name: getattr(record, name) for name in FEED_FIELDS},
            "changes_removed": getattr(record, "changes_removed", False)}


def feed_rows(records) -> list[dict]:
    """Feed rows of saved records, in the order given. Each record needs record.source."""
    return [feed_row(record_as_row(record), source=record.source) for record in records]


def record_detail(record, *, links: dict) -> dict:
    """One record as its page and /api/records/<id> show it: its feed row, the images, the diff
    and where it came from. Needs record.source and record.shard.stream. `links` is added as
    it is given ({"self", "page", "item_history", "previous", "next", "lambda_event"}: URLs, or
    None where there is no such page)."""
    source = record.source
    return {
        **feed_row(record_as_row(record), source=source),
        "event_id": record.event_id,
        "event_version": record.event_version,
        "view_type": record.view_type,
        "size_bytes": record.size_bytes,
        "shard_id": record.shard.shard_id,
        "stream_arn": record.shard.stream.arn,
        "region": source.region,
        "keys": record.keys,
        "key_schema": source.key_schema,
        "old_image": record.old_image,
        "new_image": record.new_image,
        "diff": record.diff,
        "user_identity": record.user_identity,
        "received_at": record.received_at.isoformat(),
        "images_as_sent": record.images_as_sent,
        "shape_error": record.shape_error,
        "links": links,
    }


def item_change(change, *, source) -> dict:
    """One change in an item's history: its feed row, its diff, and the item as it stood after it."""
    return {
        **feed_row(record_as_row(change), source=source),
        "view_type": change.view_type,
        "diff": change.diff,
        # The item as it stood after this change: None once it was removed, and
        # unknown (absent) when the stream's view type does not carry new images.
        "state_after": change.new_image if change.event_name != "REMOVE" else None,
        "state_known": change.event_name == "REMOVE" or change.new_image is not None,
    }


def item_history_detail(*, source, item_key: str, changes: list, truncated: bool) -> dict:
    """One item's stored changes, oldest first, as its page and /api/items/<source_id> show
    them. `truncated` says that more changes are stored than `changes` holds."""
    return {
        "source_id": source.pk,
        "table": source.table_name,
        "item_key": item_key,
        "key": key_display(keys=changes[0].keys, key_schema=source.key_schema) if changes else "",
        "changes": [item_change(change, source=source) for change in changes],
        "truncated": truncated,
    }


def record_export(record) -> dict:
    """One record as an export line: every value exactly as stored (NDJSON writes it as it is,
    the CSV export takes its columns). Needs record.source and record.shard."""
    return {
        "id": record.pk,
        "approximate_creation_time": record.approximate_creation_time.isoformat(),
        "table": record.source.table_name,
        "event_name": record.event_name,
        "key": key_display(keys=record.keys, key_schema=record.source.key_schema),
        "summary": _summary(diff=record.diff, complete=record.diff_complete, removed=getattr(record, "changes_removed", False)),
        "sequence_number": record.sequence_number,
        "shard_id": record.shard.shard_id,
        "is_ttl_delete": record.is_ttl_delete,
        "keys": record.keys,
        "old_image": record.old_image,
        "new_image": record.new_image,
        "diff": record.diff,
        "user_identity": record.user_identity,
    }

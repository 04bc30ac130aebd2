"""Telling browsers about saved records over the Channels layer.

One message per saved batch, not per record: a channel holds a bounded number of messages,
and per-record sends at hundreds of records a second would overflow it. A failed push loses
nothing: the records are in the database, and the page fetches what it missed on reconnect.
"""

import asyncio
import logging
import os

from channels.layers import get_channel_layer

from streams import codec
from streams.diff import summarize

log = logging.getLogger(__name__)

PUSH_TIMEOUT_S = 2.0
MESSAGE_TYPE = "records.batch"

_loop: asyncio.AbstractEventLoop | None = None


def _reset_loop() -> None:
    global _loop
    _loop = None


# channels_redis keeps its connection pools per event loop. One long-lived loop per process
# avoids "Event loop is closed" from pools made on a loop that async_to_sync already closed.
os.register_at_fork(after_in_child=_reset_loop)


def _run(coroutine):
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(asyncio.wait_for(coroutine, PUSH_TIMEOUT_S))


def key_display(keys: dict, key_schema: list[str]) -> str:
    """`pk=ORDER#1 · sk=2024` in key-schema order; for people, never for look-ups."""
    names = [name for name in key_schema if name in keys] + sorted(set(keys) - set(key_schema))
    return " · ".join(f"{name}={_scalar(codec.to_display(keys[name]))}" for name in names)


def _scalar(value) -> str:
    return value if isinstance(value, str) else str(value)


def feed_row(row: dict, *, source) -> dict:
    """What one row of the live feed needs; images stay on the server.

    `row` holds ChangeRecord's column values by name, with "id": an ingest row, or
    model_to_dict-like values of a saved record.
    """
    return {
        "id": row["id"],
        "source_id": source.pk,
        "table": source.table_name,
        "event_name": row["event_name"],
        "key": key_display(row["keys"], source.key_schema),
        "item_key": row["item_key"],
        "partition_key": row["partition_key"],
        "summary": summarize(row["diff"]) if row["diff_complete"] else "",
        "diff_complete": row["diff_complete"],
        "paths": sorted({change["path"] for change in row["diff"]}),
        "approximate_creation_time": row["approximate_creation_time"].isoformat(),
        "sequence_number": row["sequence_number"],
        "is_ttl_delete": row["is_ttl_delete"],
        "decode_error": row["decode_error"],
    }


def group_publish(*, group: str, message: dict) -> bool:
    """Send one message to a Channels group from sync code (a Celery worker). Returns whether
    it went; a failure is logged, never raised."""
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        _run(layer.group_send(group, message))
    except Exception as exc:  # noqa: BLE001 - the push is best effort by design
        log.warning("push to %s failed: %s: %s", group, type(exc).__name__, exc)
        return False
    return True


def batch_publish(*, source, rows: list[dict]) -> bool:
    """Send one message describing a saved batch to the source's group. Returns whether it went."""
    if not rows:
        return True
    message = {
        "type": MESSAGE_TYPE,
        "source_id": source.pk,
        "records": [feed_row(row, source=source) for row in rows],
        "last_id": max(row["id"] for row in rows),
    }
    return group_publish(group=source.group_name, message=message)

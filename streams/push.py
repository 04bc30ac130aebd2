"""Telling browsers about saved records over the Channels layer.

One message per saved batch, not per record (its rows twice, as "records" and, for a source
with masking rules, "records_masked", as people without the unmask permission see them): a channel holds a bounded number of messages,
and per-record sends at hundreds of records a second would overflow it. A failed push loses
nothing: the records are in the database, and the page fetches what it missed on reconnect.
"""

import asyncio
import logging
import os
import time

from channels.layers import get_channel_layer

from meters.store import meter_observe
from streams.records import masking_load
from streams.rows import FEED_FIELDS, feed_row

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
    # Called as the batch commits (transaction.on_commit), so this is from commit to sent.
    started = time.monotonic()
    message = {
        "type": MESSAGE_TYPE,
        "source_id": source.pk,
        "records": [feed_row(row, source=source) for row in rows],
        "last_id": max(row["id"] for row in rows),
    }
    # The rows as masked viewers see them, made here once rather than by every socket. Read
    # per batch, so a rule added a moment ago masks the next batch already.
    masking = masking_load(source_ids=[source.pk])
    if masking.covers(source.pk):
        # Only what a feed row shows is masked: the images stay on the server.
        message["records_masked"] = [
            feed_row(masking.row_mask({name: row[name] for name in FEED_FIELDS}, source=source), source=source)
            for row in rows
        ]
    sent = group_publish(group=source.group_name, message=message)
    if sent:
        meter_observe(name="shardwatch_push_latency_seconds", labels={"source": source.pk}, value=time.monotonic() - started)
    return sent

"""What a log line is about: the source, shard and trigger that the code logging it works on,
set around a shard's poll and a trigger's batch, and added to every record logged meanwhile.

With LOG_FORMAT=json they are fields of the line (`"source": 3, "shard": "shardId-…"`); the
text format leaves them out, to stay short. settings.LOGGING puts LogContextFilter on its
handler, so records of every logger get them, Shardwatch's, botocore's and Celery's alike.

What must stay true:
- The context lives in a contextvars.ContextVar: each thread, and each asyncio task, has its
  own, so a reader's pool threads and its main thread never see each other's shard. A thread
  pool does not carry the submitter's context over: set it inside the function that the pool
  runs.
- log_context restores what was there before, even when the block raises.
- A field the code logging passes itself (`log.info(..., extra={"shard": ...})`) wins.
- This module imports nothing of Django's: settings.LOGGING loads it before the apps are ready.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# The names of the fields, as a JSON line shows them: ids, as the meters' labels are (the
# shard's is AWS's ShardId).
FIELDS = ("source", "shard", "trigger")

_context: ContextVar[dict] = ContextVar("shardwatch_log_context", default={})


@contextmanager
def log_context(**fields: int | str | None) -> Iterator[None]:
    """Add `fields` (any of FIELDS; None leaves one out) to every record logged in the block,
    on top of those an enclosing log_context set. Raises ValueError for another name."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"log_context takes {', '.join(FIELDS)}, not {', '.join(sorted(unknown))}")
    token = _context.set({**_context.get(), **{name: value for name, value in fields.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def log_context_fields() -> dict:
    """The fields the enclosing log_context blocks set, {name: value} with names of FIELDS:
    for work that logs elsewhere (a trigger's handler host) to carry them over."""
    return dict(_context.get())


class LogContextFilter(logging.Filter):
    """Sets the current log_context's fields as attributes of each record it sees, which a
    JSON formatter writes as fields. Put it on a handler, so it sees the records of every
    logger that reaches it. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True

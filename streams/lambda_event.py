"""Stored change records as the event AWS Lambda receives from a DynamoDB stream.

The shape follows Lambda's DynamoDB event (see the Lambda developer guide, "Using AWS Lambda
with Amazon DynamoDB"): typed attribute values exactly as the stream gave them, epoch seconds
for ApproximateCreationDateTime, and userIdentity spelt in lower camel case as Lambda does.

The event is built as JSON bytes with the stored images spliced in as the database returns
their text, never decoded and encoded again: trigger runners send hundreds of records a second,
and decoding images was most of a batch's cost. `lambda_record()` parses those same bytes, so
the dict form and the bytes sent can never disagree.
"""

import functools

import orjson
from django.db.models import FloatField, Func, TextField
from django.db.models.functions import Cast

from streams.models import ChangeRecord

# The columns event_json() needs besides the images and times (see event_rows()), and those a
# trigger runner keeps of each record.
EVENT_FIELDS = (
    "id", "sequence_key", "sequence_number", "event_id", "event_name", "event_version", "size_bytes", "view_type",
    "user_identity",
)
IMAGE_TEXT = {"keys_json": "keys", "new_image_json": "new_image", "old_image_json": "old_image"}
EPOCH_SECONDS = {"created_epoch": "approximate_creation_time", "received_epoch": "received_at"}


class EpochSeconds(Func):
    """A datetime column as Unix seconds, worked out by the database: a runner reads a thousand
    records at a time, and making datetime objects of their times cost more than the rest."""

    output_field = FloatField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::float8", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        # Django keeps datetimes in SQLite as UTC text, "YYYY-MM-DD HH:MM:SS[.ffffff]". Whole
        # seconds from unixepoch() (SQLite 3.38) of the text without its fraction (it would
        # round), then the fraction: a whole second stays exact, as julianday() arithmetic
        # would not.
        template = "(unixepoch(substr(%(expressions)s, 1, 19)) + CAST(substr(%(expressions)s, 20) AS REAL))"
        return self.as_sql(compiler, connection, template=template, **extra)


def event_rows(records):
    """A ChangeRecord queryset as dicts that event_json() takes: the images as the stored JSON
    text (Cast to text: PostgreSQL keeps them as json, SQLite as text) and the times as
    Unix seconds."""
    return records.values(
        *EVENT_FIELDS,
        **{alias: Cast(column, TextField()) for alias, column in IMAGE_TEXT.items()},
        **{alias: EpochSeconds(column) for alias, column in EPOCH_SECONDS.items()},
    )


def _text(value) -> bytes:
    return value.encode() if isinstance(value, str) else value


@functools.lru_cache(maxsize=1024)
def _fixed(event_name: str, event_version: str, region: str, view_type: str, stream_arn: str) -> tuple[bytes, bytes]:
    # The parts that repeat from record to record of a shard, made once: a runner builds
    # hundreds of records a second.
    middle = orjson.dumps({
        "eventName": event_name, "eventVersion": event_version or "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": region,
    })
    head = b"," + middle[1:-1] + b',"dynamodb":{"ApproximateCreationDateTime":'
    tail = b',"StreamViewType":' + orjson.dumps(view_type) + b'},"eventSourceARN":' + orjson.dumps(stream_arn)
    return head, tail


def event_json(row: dict, *, region: str, stream_arn: str) -> bytes:
    """One element of the event's Records list, as JSON. `row` is from event_rows(): the images
    are JSON text, inserted as they are."""
    head, tail = _fixed(row["event_name"], row["event_version"], region, row["view_type"], stream_arn)
    parts = [
        b'{"eventID":', orjson.dumps(row["event_id"]), head,
        b"%d" % int(row["created_epoch"]), b',"Keys":', _text(row["keys_json"]),
    ]
    if row["new_image_json"] is not None:
        parts += [b',"NewImage":', _text(row["new_image_json"])]
    if row["old_image_json"] is not None:
        parts += [b',"OldImage":', _text(row["old_image_json"])]
    parts += [b',"SequenceNumber":', orjson.dumps(row["sequence_number"]), b',"SizeBytes":%d' % row["size_bytes"], tail]
    identity = row["user_identity"]
    if identity:
        parts += [b',"userIdentity":', orjson.dumps({
            "type": identity.get("Type", identity.get("type")),
            "principalId": identity.get("PrincipalId", identity.get("principalId")),
        })]
    parts.append(b"}")
    return b"".join(parts)


def event_payload(records_json: list[bytes]) -> bytes:
    """The whole {"Records": [...]} from its records' JSON."""
    return b'{"Records":[' + b",".join(records_json) + b"]}"


def record_event_json(record: ChangeRecord) -> bytes:
    """event_json() of a model instance. Needs record.source and record.shard.stream."""
    row = {field: getattr(record, "pk" if field == "id" else field) for field in EVENT_FIELDS}
    for alias, column in IMAGE_TEXT.items():
        value = getattr(record, column)
        row[alias] = None if value is None else orjson.dumps(value)
    for alias, column in EPOCH_SECONDS.items():
        row[alias] = getattr(record, column).timestamp()
    return event_json(row, region=record.source.region, stream_arn=record.shard.stream.arn)


def lambda_record(record: ChangeRecord) -> dict:
    """One element of the event's Records list. Needs record.source and record.shard.stream."""
    return orjson.loads(record_event_json(record))


def lambda_event(records: list[ChangeRecord]) -> dict:
    """The exact {"Records": [...]} a Lambda function would be invoked with."""
    return orjson.loads(event_payload([record_event_json(record) for record in records]))

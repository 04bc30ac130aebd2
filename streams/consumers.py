"""The other consumers of a stream that Lambda knows of: its event source mappings.

DynamoDB throttles a shard's readers when more than two processes read it at the same time:
"No more than two processes at most should be reading from the same streams shard at the same
time" (DynamoDB Developer Guide, Streams; Service Quotas), and LimitExceededException is "More
than 2 processes are reading from the same streams shard at the same time. Exceeding this limit
may result in request throttling." (DynamoDB API reference). Shardwatch is one reader of each
shard it watches; every Lambda event source mapping on the same stream that is reading is
another. Discovery asks Lambda for the mappings every SHARDWATCH_CONSUMERS_INTERVAL_S
(stream_consumers_refresh) and stores what it found on the Stream row; the overview shows it
(stream_consumers) without calling AWS.

Not counted: readers that leave no trace Shardwatch can ask for (a KCL application, a second
Shardwatch). Not told apart: global tables, for which Service Quotas recommends one reader only.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from streams import aws
from streams.models import Stream

log = logging.getLogger(__name__)

# DynamoDB Streams: at most two readers per shard (see the module docstring).
READERS_PER_SHARD_MAX = 2

# EventSourceMappingConfiguration.State is one of Creating, Enabling, Enabled, Disabling,
# Disabled, Updating, Deleting (Lambda API reference). Counted as readers: Enabled, which polls;
# Creating and Enabling, which end in Enabled (a mapping created with Enabled=false goes on to
# Disabled, which the next look-up sees); and Updating, a change of settings that keeps an enabled
# mapping polling ("update an event source mapping ... without losing your position in the
# stream"). Not counted: Disabled ("If you disable the event source mapping, Lambda stops
# polling"), and Disabling and Deleting, on their way out. The warning errs towards counting a
# mapping that is about to read rather than missing one.
READING_STATES = frozenset({"Creating", "Enabling", "Enabled", "Updating"})

# DynamoDB Local names its streams arn:aws:dynamodb:ddblocal:000000000000:table/T/stream/...
DYNAMODB_LOCAL_REGION = "ddblocal"

# The look-ups that asked Lambda (DynamoDB Local's streams are never asked about).
_ASKED = frozenset(set(Stream.MappingsLookup) - {Stream.MappingsLookup.PENDING, Stream.MappingsLookup.NO_LAMBDA})

_LOOKUP_AFTER_FAILURE = {
    aws.Failure.DENIED: Stream.MappingsLookup.DENIED,
    aws.Failure.UNREACHABLE: Stream.MappingsLookup.UNREACHABLE,
}


def arn_is_dynamodb_local(arn: str) -> bool:
    """Whether a stream ARN is DynamoDB Local's, which has no Lambda to ask."""
    parts = arn.split(":")
    return len(parts) > 3 and parts[3] == DYNAMODB_LOCAL_REGION


def event_source_mappings_list(*, stream_arn: str, region: str) -> list[dict]:
    """Every Lambda event source mapping of `stream_arn` in `region`: ListEventSourceMappings
    with EventSourceArn, following NextMarker (Lambda returns at most 100 a response). Each is
    {"uuid", "function_arn", "state", "batch_size", "starting_position" ("" when not given),
    "last_modified" (ISO 8601, or "")}, in Lambda's order.

    Raises what botocore raises (aws.AWS_ERRORS): AccessDeniedException when the identity lacks
    lambda:ListEventSourceMappings, EndpointConnectionError when Lambda cannot be reached.
    """
    client = aws.lambda_client(region=region)
    mappings = []
    for page in client.get_paginator("list_event_source_mappings").paginate(EventSourceArn=stream_arn):
        for mapping in page.get("EventSourceMappings", []):
            modified = mapping.get("LastModified")
            mappings.append(
                {
                    "uuid": mapping.get("UUID", ""),
                    "function_arn": mapping.get("FunctionArn", ""),
                    "state": mapping.get("State", ""),
                    "batch_size": mapping.get("BatchSize"),
                    "starting_position": mapping.get("StartingPosition", ""),
                    "last_modified": modified.isoformat() if isinstance(modified, datetime) else "",
                }
            )
    return mappings


def stream_consumers_refresh(*, stream_id: int, now: datetime | None = None) -> bool:
    """Look up the stream's event source mappings and store them on its row, unless they were
    looked up less than SHARDWATCH_CONSUMERS_INTERVAL_S before `now`. Returns whether it looked.

    Never raises for an AWS error: a look-up that fails stores why the mappings are unknown
    (Stream.MappingsLookup: denied, unreachable, failed, with AWS's message), and is tried again
    after the interval. A stream of DynamoDB Local is not looked up at all (NO_LAMBDA): there is
    no Lambda there, and the demo must not reach out to AWS.
    """
    now = now or timezone.now()
    due = Q(lambda_mappings_checked_at__isnull=True) | Q(
        lambda_mappings_checked_at__lte=now - timedelta(seconds=settings.SHARDWATCH_CONSUMERS_INTERVAL_S)
    )
    # A conditional UPDATE claims the look-up: two discoveries of one source at the same time
    # (the periodic one, and one asked for when a shard ended) make one call to Lambda, not two.
    if Stream.objects.filter(due, pk=stream_id).update(lambda_mappings_checked_at=now) != 1:
        return False
    stream = Stream.objects.select_related("source").get(pk=stream_id)
    mappings: list[dict] = []
    error = ""
    if arn_is_dynamodb_local(stream.arn):
        lookup = Stream.MappingsLookup.NO_LAMBDA
    else:
        try:
            mappings = event_source_mappings_list(stream_arn=stream.arn, region=stream.source.region)
            lookup = Stream.MappingsLookup.LISTED
        except aws.AWS_ERRORS as exc:
            lookup = _LOOKUP_AFTER_FAILURE.get(aws.classify(exc), Stream.MappingsLookup.FAILED)
            error = aws.describe(exc)[:4000]
            log.warning("ListEventSourceMappings for %s failed: %s", stream.arn, error)
    Stream.objects.filter(pk=stream_id).update(
        lambda_mappings=mappings, lambda_mappings_lookup=lookup, lambda_mappings_error=error
    )
    return True


def stream_consumers(*, stream: Stream) -> dict:
    """What the overview shows of a stream's other consumers, from its row (no AWS call):

    {"lookup": Stream.MappingsLookup value, "lookup_display": its label,
     "error": AWS's error when the look-up failed, else "",
     "checked_at": when Lambda was last asked, or None (never, or not for DynamoDB Local),
     "mappings": [{"uuid", "function_arn", "function_name", "state", "batch_size",
                   "starting_position", "last_modified" (datetime or None), "reads"}],
     "mappings_reading": how many of them read (READING_STATES),
     "readers_per_shard": Shardwatch's one reader + mappings_reading, or None when unknown,
     "too_many": readers_per_shard > READERS_PER_SHARD_MAX,
     "reading_functions": the function names of the mappings that read}

    Shardwatch counts as a reader of every stream it shows: it reads each shard once, with one
    lease. DynamoDB Local has no Lambda, so there the count is Shardwatch alone.
    """
    lookup = Stream.MappingsLookup(stream.lambda_mappings_lookup)
    mappings = [_mapping_row(mapping) for mapping in stream.lambda_mappings] if lookup == Stream.MappingsLookup.LISTED else []
    reading = [mapping for mapping in mappings if mapping["reads"]]
    known = lookup in (Stream.MappingsLookup.LISTED, Stream.MappingsLookup.NO_LAMBDA)
    readers = 1 + len(reading) if known else None
    return {
        "lookup": lookup.value,
        "lookup_display": lookup.label,
        "error": stream.lambda_mappings_error,
        "checked_at": stream.lambda_mappings_checked_at if lookup in _ASKED else None,
        "mappings": mappings,
        "mappings_reading": len(reading),
        "readers_per_shard": readers,
        "too_many": readers is not None and readers > READERS_PER_SHARD_MAX,
        "reading_functions": [mapping["function_name"] for mapping in reading],
    }


def _mapping_row(mapping: dict) -> dict:
    modified = mapping.get("last_modified") or ""
    return {
        "uuid": mapping.get("uuid", ""),
        "function_arn": mapping.get("function_arn", ""),
        "function_name": function_name(mapping.get("function_arn", "")),
        "state": mapping.get("state", ""),
        "batch_size": mapping.get("batch_size"),
        "starting_position": mapping.get("starting_position", ""),
        "last_modified": datetime.fromisoformat(modified) if modified else None,
        "reads": mapping.get("state") in READING_STATES,
    }


def function_name(function_arn: str) -> str:
    """The function's name (with its version or alias, if the ARN has one) from its ARN,
    arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]; anything else as it is."""
    parts = function_arn.split(":")
    if len(parts) >= 7 and parts[5] == "function":
        return ":".join(parts[6:])
    return function_arn

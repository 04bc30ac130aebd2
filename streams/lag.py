"""How far behind the stream a source is: iterator ages, and record times that are rounded.

Lag is Lambda's IteratorAge ("the age of the last record in each batch of records processed",
Lambda developer guide, "Working with Lambda function metrics"): at each poll, the age of the
newest record the poll returned, measured when it was read; 0 when the poll returned nothing
(the reader is caught up). Between polls the figure grows with the time since the last poll,
since a record written after that poll is not read yet: a source's lag is the highest, over
its readable shards, of (iterator age at the shard's last poll + seconds since that poll).

What must stay true:
- A lag is never larger than what can be known. ApproximateCreationDateTime is rounded down:
  to the second by AWS (API reference, DynamoDB Streams, StreamRecord), to the minute by
  DynamoDB Local. A rounded-down time makes a record look up to one step older than it is,
  so an age subtracts the step (never below 0). On DynamoDB Local that leaves only what the
  poll times say, which is the point: an idle table read within a second shows no lag.
- A reader writes nothing per empty poll (streams/reader.py). The age and time of a poll that
  saved records go in the batch's own UPDATE (streams.ingest.records_save); that a shard was
  caught up (age 0) is written for the shards a reader holds at its next lease renewal, in
  the renewal's UPDATE, each with its own poll time rounded down to the second. A shard whose
  next call is in flight (running, or queued behind the reader's busy threads) is written
  too, with the time of its last poll, which stays put while the call is out: a GetRecords
  that hangs (up to the client's read timeout times its attempts) grows that shard's lag
  only, never that of the other shards and sources on the same reader, and a shard queued
  on a busy reader shows how long ago it was really polled, not an older renewal's figure.
  So a caught-up shard's figure is at most one renewal interval (SHARDWATCH_LEASE_S / 3) plus
  one poll interval plus one second behind the truth, and always on the high side, never the
  low.
- The figure's resolution is therefore one lease renewal (5 s with the default
  SHARDWATCH_LEASE_S of 15): an idle source's lag is a sawtooth from about 0 to 5 s plus one
  idle poll interval (SHARDWATCH_IDLE_POLL_INTERVAL_S) and one second, reset at each renewal.
  The metric's HELP text (meters.catalog) says so. It is not tightened with the renewal time:
  a live lease renewed at T says only that each shard was polled at its own last poll time
  (written then, exactly); it says nothing of polls after T, and a shard
  whose call hangs, or is backing off after errors, is not polled each idle interval while
  its reader renews on. Counting such a shard as polled at the renewal would show a lag too
  low, which is the one thing this figure must not do. Writing caught-up polls more often
  would break the write-free empty poll.
"""

from datetime import datetime

from django.conf import settings

from streams.consumers import arn_is_dynamodb_local
from streams.models import StreamSource

# AWS rounds ApproximateCreationDateTime down to the second; DynamoDB Local to the minute.
AWS_RECORD_TIME_STEP_S = 1
MINUTE_STEP_S = 60
# A batch says that a source's record times are rounded to the minute when it holds at least
# this many records, over at least two minutes, every one on a whole minute: with AWS's
# one-second times the chance of that is 60^-20 unless every write lands in second 0.
ROUNDED_EVIDENCE_RECORDS = 20


# Poll times written at a lease renewal are rounded down to the second (see above).
POLL_TIME_STEP_S = 1


def lag_idle_s() -> float:
    """The most lag (seconds) an idle, healthy source shows: one lease renewal
    (SHARDWATCH_LEASE_S / 3), one idle poll (SHARDWATCH_IDLE_POLL_INTERVAL_S) and the poll
    time's rounding (POLL_TIME_STEP_S), as the docstring above works out. A lag alert at or
    below it would always fire (alerts.models.Rule.clean)."""
    return settings.SHARDWATCH_LEASE_S / 3 + settings.SHARDWATCH_IDLE_POLL_INTERVAL_S + POLL_TIME_STEP_S


def record_time_step_s(*, source: StreamSource) -> int:
    """How far down (seconds) the source's ApproximateCreationDateTime values are rounded: 60
    for DynamoDB Local (its stream ARN names the region "ddblocal") or a source whose records
    showed it (StreamSource.record_time_step_s), else AWS's 1."""
    if arn_is_dynamodb_local(source.stream_arn):
        return MINUTE_STEP_S
    return max(source.record_time_step_s or AWS_RECORD_TIME_STEP_S, AWS_RECORD_TIME_STEP_S)


def record_times_rounded(*, source: StreamSource) -> bool:
    """Whether the source's record times are rounded to the minute, so that the pages, the
    metrics and the alerts must say so and use receive and poll times instead."""
    return record_time_step_s(source=source) >= MINUTE_STEP_S


def record_times_look_rounded(*, times: list[datetime]) -> bool:
    """Whether a batch's ApproximateCreationDateTimes (aware datetimes) show rounding to the
    minute: see ROUNDED_EVIDENCE_RECORDS."""
    if len(times) < ROUNDED_EVIDENCE_RECORDS:
        return False
    if any(at.second or at.microsecond for at in times):
        return False
    return len({at.replace(second=0, microsecond=0) for at in times}) >= 2


def iterator_age_s(*, read_at: datetime, newest_at: datetime, step_s: int) -> float:
    """The iterator age (seconds, >= 0) of a poll read at `read_at` whose newest record has the
    ApproximateCreationDateTime `newest_at`, rounded down by up to `step_s` seconds: the
    lowest age the record can have. Clock skew between AWS and us never makes it negative."""
    return round(max(0.0, (read_at - newest_at).total_seconds() - step_s), 3)

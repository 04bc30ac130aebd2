"""Sources read from the fake Streams API (fake_streams.py), and small helpers for their tests."""

from streams import aws
from streams.models import Stream, StreamSource
from tests.support.fake_streams import ARN, FakeStreams, stream_record
from tests.support.readers import shards_claim
from streams.sources import stream_sync_shards

FAKE_ENDPOINT = "http://fake-streams.invalid"


def fake_source_create(fake: FakeStreams) -> StreamSource:
    """An active source whose stream client is `fake`. The caller forgets the client after."""
    aws.client_install(service="dynamodbstreams", region="us-east-1", endpoint_url=FAKE_ENDPOINT, client=fake)
    source = StreamSource.objects.create(
        table_name="fake",
        region="us-east-1",
        endpoint_url=FAKE_ENDPOINT,
        stream_arn=ARN,
        view_type="NEW_AND_OLD_IMAGES",
        key_schema=["pk"],
        status=StreamSource.Status.ACTIVE,
    )
    Stream.objects.create(source=source, arn=ARN)
    return source


def numbered(prefix, count, start=1):
    return [stream_record(sequence_number=f"{start + i:021d}", pk=f"{prefix}{i}", new={}) for i in range(count)]


def sync(source):
    for stream in source.streams.all():
        stream_sync_shards(stream_id=stream.pk)


def claim_one():
    [(shard_id, owner)] = shards_claim()
    return shard_id, owner

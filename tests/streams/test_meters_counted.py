"""What the readers count where the work happens (meters.store): polls, poll errors by AWS
error code, records read, gaps, and the ingest and push latencies, as /metrics reads them.

Errors and many shards come from the fake Streams API (tests/support/fake_streams.py), since
DynamoDB Local can be made to throttle or send an unusable record by no request.
"""

import pytest
from botocore.exceptions import EndpointConnectionError
from django.db import connection

from streams.models import Gap
from streams.reader import Reader
from tests.support.fake_sources import sync
from tests.support.fake_streams import FakeShard, FakeStreams, aws_error, stream_record
from tests.support.meters import meter_value

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reader():
    one = Reader(threads=1)
    yield one
    one.close()


def test_it_counts_polls_records_read_and_ingest_and_push_latency(fake_source, reader):
    fake = FakeStreams([FakeShard("shardId-00000"), FakeShard("shardId-00001")])
    source = fake_source(fake)
    sync(source)
    fake.records_append(shard_id="shardId-00000", count=3)
    reader.leases_balance()

    reader.polls_round()
    reader.polls_round()

    assert meter_value("shardwatch_polls_total", source=source.pk) == 4
    assert meter_value("shardwatch_records_read_total", source=source.pk) == 3
    assert meter_value("shardwatch_ingest_latency_seconds_count", source=source.pk) == 1
    assert meter_value("shardwatch_ingest_latency_seconds_bucket", source=source.pk, le="+Inf") == 1
    assert 0 < meter_value("shardwatch_ingest_latency_seconds_sum", source=source.pk) < 5
    assert meter_value("shardwatch_push_latency_seconds_count", source=source.pk) == 1


def test_it_counts_poll_errors_by_aws_error_code(fake_source, reader):
    fake = FakeStreams([FakeShard("shardId-00000")])
    source = fake_source(fake)
    sync(source)
    fake.errors["GetRecords"] = [
        aws_error("LimitExceededException", "GetRecords"),
        aws_error("LimitExceededException", "GetRecords"),
        EndpointConnectionError(endpoint_url="http://fake-streams.invalid"),
    ]
    reader.leases_balance()

    for _ in range(4):
        reader.polls_round()

    assert meter_value("shardwatch_poll_errors_total", source=source.pk, error="LimitExceededException") == 2
    # Not an AWS answer: the endpoint was not reached. Named by botocore's exception class.
    assert meter_value("shardwatch_poll_errors_total", source=source.pk, error="EndpointConnectionError") == 1
    assert meter_value("shardwatch_polls_total", source=source.pk) == 4


def test_it_counts_a_gap(fake_source, reader):
    unusable = stream_record(sequence_number="000000000000000000001", pk="k1", new={})
    del unusable["dynamodb"]["SequenceNumber"]
    fake = FakeStreams([FakeShard("shardId-00000")])
    source = fake_source(fake)
    sync(source)
    fake.shards["shardId-00000"].records.append(unusable)
    reader.leases_balance()

    reader.polls_round()

    assert Gap.objects.filter(source=source).count() == 1
    assert meter_value("shardwatch_gaps_total", source=source.pk) == 1


@pytest.fixture
def checkpoint_commit_fails_once():
    """The next COMMIT that moves a shard's checkpoint fails, in PostgreSQL itself: a deferred
    constraint trigger raises at commit time (a sequence, which no rollback undoes, lets it fail
    only once)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE SEQUENCE test_commit_fails_once;
            CREATE FUNCTION test_commit_fails_once() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('test_commit_fails_once') = 1 THEN
                    RAISE EXCEPTION 'COMMIT refused once by the test';
                END IF;
                RETURN NULL;
            END $$;
            CREATE CONSTRAINT TRIGGER test_commit_fails_once AFTER UPDATE ON streams_shard
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                WHEN (NEW.checkpoint IS DISTINCT FROM OLD.checkpoint)
                EXECUTE FUNCTION test_commit_fails_once();
            """
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DROP TRIGGER test_commit_fails_once ON streams_shard;
            DROP FUNCTION test_commit_fails_once();
            DROP SEQUENCE test_commit_fails_once;
            """
        )


def test_it_counts_a_batch_once_when_its_commit_failed_and_it_was_read_again(fake_source, reader, checkpoint_commit_fails_once):
    unusable = stream_record(sequence_number="000000000000000000002", pk="k1", new={})
    del unusable["dynamodb"]["SequenceNumber"]
    fake = FakeStreams([FakeShard("shardId-00000")])
    source = fake_source(fake)
    sync(source)
    fake.records_append(shard_id="shardId-00000", count=3)
    fake.shards["shardId-00000"].records.insert(1, unusable)
    reader.leases_balance()

    assert reader.polls_round() == 0  # the COMMIT failed: the reader forgets the shard
    reader.leases_renew()  # and reads it again from its checkpoint
    assert reader.polls_round() == 3

    assert Gap.objects.filter(source=source).count() == 1
    assert meter_value("shardwatch_records_read_total", source=source.pk) == 3
    assert meter_value("shardwatch_gaps_total", source=source.pk) == 1
    assert meter_value("shardwatch_ingest_latency_seconds_count", source=source.pk) == 1
    assert meter_value("shardwatch_push_latency_seconds_count", source=source.pk) == 1

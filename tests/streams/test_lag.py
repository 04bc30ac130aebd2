"""Lag that does not lie (streams.lag, streams.selectors.sources_lag): each shard's iterator age
at its last poll plus the time since, record times rounded to the minute subtracted away.

Most tests read the fake Streams API (tests/support/fake_streams.py), whose records carry the
ApproximateCreationDateTime a test chooses; one reads a real DynamoDB Local table, which
rounds it down to the minute.
"""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from streams.models import Shard, StreamSource
from streams.reader import Reader
from streams.selectors import sources_lag
from streams.sources import source_add
from tests.support.fake_sources import sync
from tests.support.fake_streams import FakeShard, FakeStreams, stream_record
from tests.support.readers import Readers

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reader():
    started = []

    def start():
        started.append(Reader(threads=4))
        return started[-1]

    yield start
    for each in started:
        each.close()


def two_shards() -> FakeStreams:
    return FakeStreams([FakeShard("shardId-00000"), FakeShard("shardId-00001")])


def test_it_records_the_age_of_the_newest_record_a_poll_saved(fake_source, reader):
    fake = two_shards()
    source = fake_source(fake)
    sync(source)
    fake.records_append(shard_id="shardId-00000", count=2, written_at=datetime.now(UTC) - timedelta(seconds=30))
    one = reader()
    one.leases_balance()

    assert one.polls_round() == 2

    shard = Shard.objects.get(shard_id="shardId-00000")
    # 30 s old, less the second AWS may have rounded it down by.
    assert 28.5 <= shard.iterator_age_s <= 30
    assert (timezone.now() - shard.iterator_age_at).total_seconds() < 2
    lag = sources_lag(now=timezone.now())[source.pk]
    assert 28.5 <= lag.lag_s <= 33 and lag.worst_shards[0][0] == "shardId-00000"
    assert lag.rounded is False


def test_it_moves_the_last_poll_with_a_poll_that_saved_records(fake_source, reader):
    # The Streams page's "last poll" must never be older than its "last record received".
    fake = two_shards()
    source = fake_source(fake)
    sync(source)
    one = reader()
    one.leases_balance()
    renewed_at = Shard.objects.get(shard_id="shardId-00000").last_polled_at
    time.sleep(0.3)
    fake.records_append(shard_id="shardId-00000", count=2, written_at=datetime.now(UTC))

    assert one.polls_round() == 2

    shard = Shard.objects.get(shard_id="shardId-00000")
    assert shard.last_polled_at > renewed_at
    assert shard.last_polled_at == shard.last_record_at == shard.iterator_age_at


def test_it_writes_a_caught_up_shard_at_its_next_lease_renewal_and_nothing_per_empty_poll(fake_source, reader):
    fake = two_shards()
    source = fake_source(fake)
    sync(source)
    fake.records_append(shard_id="shardId-00000", count=1, written_at=datetime.now(UTC) - timedelta(seconds=600))
    one = reader()
    one.leases_balance()
    one.polls_round()
    assert sources_lag(now=timezone.now())[source.pk].lag_s >= 598

    with CaptureQueriesContext(connection) as queries:
        one.polls_round()
    assert [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")] == []
    with CaptureQueriesContext(connection) as queries:
        one.leases_renew()

    assert len([q for q in queries if q["sql"].startswith('UPDATE "streams_shard"')]) == 1
    assert set(Shard.objects.values_list("iterator_age_s", flat=True)) == {0.0}
    lag = sources_lag(now=timezone.now())[source.pk]
    assert lag.lag_s < 2 and lag.polled_ago_s < 2


def test_it_keeps_an_idle_sources_lag_within_one_renewal_interval_and_one_idle_poll(fake_source, reader, settings):
    # The figure's resolution (streams.lag): between renewals nothing says the shards were
    # polled, so the lag of a caught-up source grows until the next renewal writes their polls.
    source = fake_source(two_shards())
    sync(source)
    one = reader()
    one.leases_balance()
    one.polls_round()
    one.leases_renew()
    renewed_at = timezone.now()
    renewal_s = settings.SHARDWATCH_LEASE_S / 3

    lag = sources_lag(now=renewed_at + timedelta(seconds=renewal_s))[source.pk]

    assert renewal_s <= lag.lag_s <= renewal_s + settings.SHARDWATCH_IDLE_POLL_INTERVAL_S + 1


def test_it_gives_a_hung_call_s_lag_to_its_own_shard_only(fake_source, reader):
    # A GetRecords that hangs (botocore's 10 s read timeout, twice) is played by the fake
    # Streams API: neither DynamoDB Local nor a test can make a real endpoint hang one shard.
    fake = two_shards()
    source = fake_source(fake)
    sync(source)
    one = reader()
    one.leases_balance()
    one.polls_round()
    one.leases_renew()
    hung = threading.Event()
    fake.before[("GetRecords", "shardId-00000")] = [lambda: hung.wait(30)]
    try:
        started = time.monotonic()
        while time.monotonic() - started < 4:
            one.polls_wait(timeout_s=0.1)
        one.leases_renew()

        lags = dict(sources_lag(now=timezone.now())[source.pk].worst_shards)
    finally:
        hung.set()

    # shardId-00001 was polled every second meanwhile: its figure is its own last poll, not the
    # hung shard's older one.
    assert lags["shardId-00001"] <= 2.5
    assert lags["shardId-00000"] >= 4


def test_it_gives_a_shard_queued_behind_busy_threads_the_lag_of_its_own_last_poll(fake_source, reader):
    # A busy reader: every thread of its pool is taken (by two calls that hang, played by the
    # fake Streams API as above), so the next call of a shard that was polled a moment ago waits
    # in the pool's queue. The renewal writes that shard's own last poll, not an older figure.
    fake = FakeStreams([FakeShard("shardId-00000"), FakeShard("shardId-00001"), FakeShard("shardId-00002")])
    source = fake_source(fake)
    sync(source)
    one = Reader(threads=2)
    try:
        one.leases_balance()
        one.polls_round()
        one.leases_renew()
        hung = threading.Event()
        for shard_id in ("shardId-00000", "shardId-00002"):
            fake.before[("GetRecords", shard_id)] = [lambda: None] * 4 + [lambda: hung.wait(30)]
        try:
            started = time.monotonic()
            while time.monotonic() - started < 7:
                one.polls_wait(timeout_s=0.1)
            one.leases_renew()

            lags = dict(sources_lag(now=timezone.now())[source.pk].worst_shards)
        finally:
            hung.set()
    finally:
        one.close()

    assert lags["shardId-00001"] <= 3.5


def test_it_grows_the_lag_of_a_shard_nobody_polls(fake_source, reader):
    source = fake_source(two_shards())
    sync(source)
    one = reader()
    one.leases_balance()
    one.polls_round()
    one.leases_renew()
    polled_at = Shard.objects.get(shard_id="shardId-00001").iterator_age_at

    lag = sources_lag(now=polled_at + timedelta(minutes=5))[source.pk]

    assert 300 <= lag.lag_s <= 301 and 300 <= lag.polled_ago_s <= 301


def test_it_counts_a_shard_never_polled_from_its_discovery(fake_source):
    source = fake_source(two_shards())
    sync(source)
    discovered = Shard.objects.get(shard_id="shardId-00001").discovered_at
    Shard.objects.filter(shard_id="shardId-00000").update(iterator_age_s=0, iterator_age_at=discovered + timedelta(seconds=50))

    lag = sources_lag(now=discovered + timedelta(seconds=60))[source.pk]

    assert lag.lag_s == pytest.approx(60, abs=0.5)
    assert lag.worst_shards == (("shardId-00001", lag.lag_s), ("shardId-00000", 10.0))


def test_it_has_no_lag_for_a_source_without_readable_shards(fake_source):
    source = fake_source(two_shards())
    sync(source)
    StreamSource.objects.filter(pk=source.pk).update(enabled=False)

    lag = sources_lag(now=timezone.now(), source_ids=[source.pk])[source.pk]

    assert (lag.lag_s, lag.polled_ago_s, lag.worst_shards) == (None, None, ())


def test_it_reads_the_lag_of_a_thousand_shards_in_two_queries(fake_source, django_assert_num_queries):
    source = fake_source(FakeStreams([FakeShard(f"shardId-{i:05d}") for i in range(1000)]))
    sync(source)

    with django_assert_num_queries(2):
        lags = sources_lag(now=timezone.now())

    assert len(lags[source.pk].worst_shards) == 3


def test_it_learns_from_the_records_that_their_times_are_rounded_to_the_minute(fake_source, reader):
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    records = [
        stream_record(sequence_number=f"{n:021d}", pk=f"k{n}", new={}, written_at=minute - timedelta(minutes=n % 3))
        for n in range(1, 25)
    ]
    source = fake_source(FakeStreams([FakeShard("shardId-00000", records=records)]))
    sync(source)
    one = reader()
    one.leases_balance()

    one.polls_round()

    source.refresh_from_db()
    assert source.record_time_step_s == 60
    lag = sources_lag(now=timezone.now())[source.pk]
    assert lag.rounded is True
    # The newest record is at most a minute plus the test's time old: known only to within 60 s.
    assert lag.lag_s < 5


def test_it_shows_no_false_lag_on_an_idle_dynamodb_local_table(make_table, dynamodb):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    for number in range(3):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"order-{number}"}})
    readers = Readers(source_ids=[source.pk])
    try:
        assert readers.until_idle() == 3
        time.sleep(1.5)  # idle: the newest record only gets older
        readers.until_idle()
        # What the old figure (now - newest ApproximateCreationDateTime) showed: DynamoDB Local
        # rounds it down to the minute, so anything from 1.5 s to a minute.
        lag = sources_lag(now=timezone.now())[source.pk]
    finally:
        readers.stop()

    assert lag.rounded is True
    assert lag.lag_s < 3

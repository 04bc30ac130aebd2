"""The stream reader (streams.reader.Reader): many shards per reader, leases renewed together, an
empty poll that writes nothing, balance between readers, and release on stop.

DynamoDB Local has one shard per table, so these run against the fake Streams API
(tests/support/fake_streams.py) with a hundred shards or more.
"""

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from streams.models import ChangeRecord, Gap, Shard
from streams.reader import Reader
from tests.support.fake_sources import numbered, sync
from tests.support.fake_streams import FakeShard, FakeStreams, aws_error

pytestmark = pytest.mark.django_db(transaction=True)


def many_shards(count: int, *, records_in: dict[int, int] | None = None) -> FakeStreams:
    records_in = records_in or {}
    return FakeStreams(
        [FakeShard(f"shardId-{i:05d}", records=numbered(f"s{i}-", records_in.get(i, 0), start=i * 1000 + 1)) for i in range(count)]
    )


def held(reader: Reader) -> set[int]:
    return set(Shard.objects.held_by(reader.owner).values_list("pk", flat=True))


@pytest.fixture
def reader():
    started = []

    def start(**kwargs):
        started.append(Reader(threads=kwargs.pop("threads", 8), **kwargs))
        return started[-1]

    yield start
    for each in started:
        each.close()


def test_it_takes_every_free_shard_when_it_is_the_only_reader(fake_source, reader):
    source = fake_source(many_shards(120))
    sync(source)
    alone = reader()

    alone.leases_balance()

    assert len(alone.readings) == 120
    assert held(alone) == set(Shard.objects.values_list("pk", flat=True))


def test_it_shares_shards_evenly_with_a_reader_that_joins(fake_source, reader):
    source = fake_source(many_shards(101))
    sync(source)
    first, second = reader(), reader()
    first.leases_balance()

    second.leases_balance()  # takes its share from the reader that holds more than its own
    first.leases_balance()  # sees that it holds fewer than it reads, and lets those go

    assert (len(first.readings), len(second.readings)) == (50, 51) or (len(first.readings), len(second.readings)) == (51, 50)
    assert held(first) == set(first.readings) and held(second) == set(second.readings)
    assert not held(first) & held(second)


def test_it_takes_nothing_from_a_reader_that_holds_only_its_share(fake_source, reader):
    source = fake_source(many_shards(10))
    sync(source)
    first, second, third = reader(), reader(), reader()
    first.leases_balance()
    second.leases_balance()
    first.leases_renew()
    before = (held(first), held(second))

    # A third reader joins: a share is ceil(10 / 3) = 4. It takes one shard a balance from
    # whichever reader holds more than a share, until none does.
    for _ in range(3):
        third.leases_balance()
    first.leases_renew()
    second.leases_renew()

    assert sorted([len(first.readings), len(second.readings), len(third.readings)]) == [2, 4, 4]
    assert held(first) <= before[0] and held(second) <= before[1]


def test_it_saves_records_and_writes_nothing_on_an_empty_poll(fake_source, reader):
    fake = many_shards(50, records_in={7: 3})
    source = fake_source(fake)
    sync(source)
    one = reader()
    one.leases_balance()
    assert one.polls_round() == 3

    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert one.polls_round() == 0

    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert writes == []
    assert len(fake.operations("GetRecords")) == 50 * 4
    assert ChangeRecord.objects.filter(source=source).count() == 3


def test_it_renews_all_its_leases_in_one_update(fake_source, reader, settings):
    settings.SHARDWATCH_LEASE_S = 3  # renewed every second
    source = fake_source(many_shards(60))
    sync(source)
    one = reader()

    with CaptureQueriesContext(connection) as queries:
        one.run(run_s=3.5, should_stop=lambda: False)

    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "streams_shard"')]
    renewals = [sql for sql in updates if '"lease_expires_at" =' in sql and '"lease_owner" = \'\'' not in sql and "last_polled_by" not in sql]
    # Renewals at 0, 1, 2 and 3 s, the first taking of the shards, and the release at the end.
    assert 3 <= len(renewals) <= 5
    assert len(updates) - len(renewals) == 2
    assert not any(q["sql"].startswith("INSERT") for q in queries)
    assert Shard.objects.filter(stream__source=source).exclude(lease_owner="").count() == 0


def test_it_polls_an_idle_shard_once_a_second_and_never_faster_than_dynamodb_allows(fake_source, reader):
    fake = many_shards(40)
    source = fake_source(fake)
    sync(source)
    one = reader()

    one.run(run_s=3.2, should_stop=lambda: False)

    per_shard: dict[str, int] = {}
    for call in fake.operations("GetRecords"):
        shard_id = call["ShardIterator"].rsplit("|", 1)[0]
        per_shard[shard_id] = per_shard.get(shard_id, 0) + 1
    assert set(per_shard) == {f"shardId-{i:05d}" for i in range(40)}
    # Idle shards are polled once a second (SHARDWATCH_IDLE_POLL_INTERVAL_S): at 0, 1, 2 and 3 s.
    assert all(3 <= count <= 5 for count in per_shard.values()), per_shard


def test_it_polls_a_shard_with_records_four_times_a_second(fake_source, reader):
    fake = many_shards(3)
    source = fake_source(fake)
    sync(source)
    one = reader()
    busy = fake.shards["shardId-00001"]
    stop = threading.Event()

    def write():
        number = 0
        while not stop.is_set():
            busy.records.extend(numbered("busy", 1, start=10_000 + number))
            number += 1
            time.sleep(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        one.run(run_s=2.2, should_stop=lambda: False)
    finally:
        stop.set()
        writer.join()

    calls = [c["ShardIterator"].rsplit("|", 1)[0] for c in fake.operations("GetRecords")]
    # 4 a second while it has records (SHARDWATCH_POLL_INTERVAL_S), never above DynamoDB's 5.
    assert 7 <= calls.count("shardId-00001") <= 11
    assert calls.count("shardId-00000") <= 4


def test_it_releases_its_leases_at_once_when_told_to_stop(fake_source, reader):
    source = fake_source(many_shards(30))
    sync(source)
    one = reader()
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()

    started = time.monotonic()
    one.run(run_s=60, should_stop=stop.is_set)

    assert time.monotonic() - started < 2.0
    assert one.stats.released == 30
    assert not Shard.objects.exclude(lease_owner="").exists()


def test_it_drops_a_shard_taken_by_another_reader_and_saves_nothing_from_it(fake_source, reader):
    fake = many_shards(2)
    source = fake_source(fake)
    sync(source)
    first = reader()
    first.leases_balance()
    first.polls_round()
    lost = Shard.objects.get(shard_id="shardId-00000")
    Shard.objects.filter(pk=lost.pk).update(lease_owner="another-reader")
    fake.shards["shardId-00000"].records.extend(numbered("late", 2, start=50))

    first.polls_round()  # its poll of the lost shard reads the records but cannot save them
    first.leases_renew()

    assert set(first.readings) == {Shard.objects.get(shard_id="shardId-00001").pk}
    assert not ChangeRecord.objects.filter(shard=lost).exists()


def test_it_backs_off_a_throttled_shard_and_keeps_reading_the_others(fake_source, reader):
    fake = many_shards(5, records_in={2: 4})
    source = fake_source(fake)
    sync(source)
    fake.errors["GetRecords"] = [aws_error("LimitExceededException", "GetRecords")] * 2
    one = reader(threads=1)  # one call at a time, so the throttled calls are the first two shards'

    one.run(run_s=2.5, should_stop=lambda: False)

    assert ChangeRecord.objects.filter(source=source).count() == 4
    polled = {c["ShardIterator"].rsplit("|", 1)[0] for c in fake.operations("GetRecords")}
    assert polled == set(fake.shards)
    # Each throttled shard read again after its backoff, and the error was cleared then.
    assert not Shard.objects.filter(stream__source=source, error_count__gt=0).exists()


def test_it_comes_back_on_time_while_shards_catch_up(fake_source, reader):
    # Shards with a backlog: saving a full batch takes longer than fetching the next ones, so
    # results never stop coming while they catch up. The loop must still come back to renew,
    # balance and look at its stop condition.
    fake = many_shards(6, records_in={i: 10_000 for i in range(6)})
    source = fake_source(fake)
    sync(source)
    one = reader()
    one.leases_balance()

    started = time.monotonic()
    one.polls_wait(timeout_s=0.2)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"polls_wait came back after {elapsed:.1f} s"
    assert ChangeRecord.objects.filter(source=source).count() < 60_000  # before the backlog was read


def test_it_makes_one_gap_and_reads_on_from_the_oldest_record_after_a_trimmed_read(fake_source, reader):
    from tests.streams.test_trimmed_gaps import aged

    shard = FakeShard("shardId-00000", records=aged("old", 2, start=1, hours=30))
    fake = FakeStreams([shard])
    source = fake_source(fake)
    sync(source)
    one = reader()
    one.leases_balance()
    one.polls_round()
    # Reading stopped for a day: what it had read and the next record went past 24 hours.
    shard.records.extend([*aged("lost", 1, start=10, hours=25), *aged("late", 2, start=20, hours=2)])
    shard.trim(3)

    one.run(run_s=2.0, should_stop=lambda: False)

    assert Gap.objects.filter(source=source).count() == 1
    assert len(fake.operations("GetShardIterator")) <= 3
    keys = sorted(ChangeRecord.objects.filter(source=source).values_list("keys__pk__S", flat=True))
    assert keys == ["late0", "late1", "old0", "old1"]


def test_it_polls_a_shard_taken_back_while_its_call_was_out(fake_source, reader):
    fake = many_shards(1)
    source = fake_source(fake)
    sync(source)
    one = reader()
    one.leases_balance()
    [pk] = one.readings
    call_out, let_it_return = threading.Event(), threading.Event()

    def slow_call():  # runs on the reader's GetRecords thread
        call_out.set()
        let_it_return.wait(5)

    fake.before["GetRecords"] = [slow_call]
    one.polls_wait(timeout_s=0.1)
    assert call_out.wait(5)
    # While the call is out, another reader takes the shard, and this one takes it back.
    Shard.objects.filter(pk=pk).update(lease_owner="another-reader")
    one.leases_renew()
    Shard.objects.filter(pk=pk).update(lease_owner=one.owner)
    one.leases_renew()
    fake.shards["shardId-00000"].records.extend(numbered("back", 1, start=7))
    let_it_return.set()

    for _ in range(20):
        one.polls_wait(timeout_s=0.1)

    assert ChangeRecord.objects.filter(source=source).count() == 1

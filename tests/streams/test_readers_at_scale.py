"""The long-running readers (streams.reader, streams.tasks.read_shards) at scale, in real
processes: Celery `reader` and `worker` processes and beat over Redis, with PostgreSQL. The
last test drives one Reader in this process instead, round by round, through the error paths.

Every test here reads the fake DynamoDB Streams endpoint over HTTP
(tests/support/fake_streams_server.py, in a thread of the test process), not DynamoDB Local:
DynamoDB Local has one shard per table and never splits, trims or throttles one, and these
tests need hundreds of shards, splits while readers run, and throttling.

Time bounds are correctness bounds with wide margins, not performance targets: the machine
running the suite may be small and busy.
"""

import os
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError
from django.utils import timezone

from streams.models import ChangeRecord, Gap, Shard, StreamSource
from streams.sources import source_add, source_discover
from tests.handlers.triggers import calls
from tests.support.fake_streams import IGNORED, TRIMMED_MESSAGE, FakeStreams, aws_error
from tests.support.processes import Processes, wait_for
from tests.support.readers import Readers
from tests.support.triggering import trigger_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def processes(fake_streams_server):
    """`processes(**environment)`: a Processes whose children have these settings. Asks for
    the fake endpoint first, so that the children inherit the credentials it sets."""
    started = []

    def start(**overrides) -> Processes:
        started.append(Processes(SHARDWATCH_DISPATCH_INTERVAL_S="1", **overrides))
        return started[-1]

    yield start
    for each in started:
        each.stop_all()


def source_on(server, fake: FakeStreams) -> StreamSource:
    """A source on the fake endpoint serving `fake`, its shards discovered as they are now."""
    server.fake = fake
    source = source_add(table_name=fake.table_name, region="us-east-1", endpoint_url=server.url)
    source_discover(source_id=source.pk)
    return source


def holders() -> Counter:
    """How many shards each reader holds now (unexpired leases), by the reader's pid."""
    owners = Shard.objects.filter(lease_expires_at__gte=timezone.now()).exclude(lease_owner="")
    # A lease owner is "host:pid/token" (streams.reader.Reader.owner).
    return Counter(owner.split("/", 1)[0].rsplit(":", 1)[1] for owner in owners.values_list("lease_owner", flat=True))


def stored(source) -> list[tuple[str, str]]:
    """(shard id, sequence number) of every record stored for `source`, duplicates kept."""
    return list(ChangeRecord.objects.filter(source=source).values_list("shard__shard_id", "sequence_number"))


def test_it_runs_triggers_discovery_and_retention_while_readers_hold_500_shards(processes, fake_streams_server, tmp_path):
    # Readers run on a queue of their own that only the reader worker consumes: were they on
    # the worker's, its two processes would be readers, and nothing below would run.
    fake = FakeStreams.generated(open_shards=500)
    source = source_on(fake_streams_server, fake)
    # The first dispatch makes the trigger's 500 cursors, while the readers run.
    trigger_for(source, "record_batches")
    started = processes(SHARDWATCH_DISCOVERY_INTERVAL_S="2", SHARDWATCH_RETENTION_INTERVAL_S="2")
    started.worker("worker", concurrency=2)
    started.reader("reader", concurrency=2)
    started.beat(tmp_path / "beat-schedule")

    assert wait_for(lambda: sum(holders().values()) == 500 and len(holders()) == 2, timeout=45), (
        f"the two readers of the reader worker did not take the 500 shards: {holders()}"
    )
    all_held_at = timezone.now()
    requests_before, clock_before = fake_streams_server.requests["GetRecords"], time.monotonic()
    shard_ids = list(fake.shards)
    # Past the source's retention (7 days): saved by the reader, then deleted by retention.
    expired = fake.records_append(
        shard_id=shard_ids[10], count=2, written_at=timezone.now() - timedelta(days=source.retention_days + 1)
    )
    [fresh] = fake.records_append(shard_id=shard_ids[400], count=1)
    written_at = time.monotonic()

    fresh_key = fresh["dynamodb"]["Keys"]["pk"]["S"]
    assert wait_for(lambda: any(fresh_key in batch for batch in calls()), timeout=15), (
        "the trigger was not invoked with the new record within 15 s"
    )
    invoked_s = time.monotonic() - written_at
    assert wait_for(
        lambda: StreamSource.objects.get(pk=source.pk).last_discovered_at > all_held_at, timeout=15
    ), "no periodic discovery ran within 15 s"
    expired_numbers = [record["dynamodb"]["SequenceNumber"] for record in expired]

    def expired_saved_then_deleted():
        checkpoint = Shard.objects.get(shard_id=shard_ids[10]).checkpoint
        return checkpoint == expired_numbers[-1] and not ChangeRecord.objects.filter(
            sequence_number__in=expired_numbers
        ).exists()

    assert wait_for(expired_saved_then_deleted, timeout=15), "retention did not delete the expired records within 15 s"
    assert ChangeRecord.objects.filter(sequence_number=fresh["dynamodb"]["SequenceNumber"]).exists()
    # The readers kept every shard all along.
    assert sum(holders().values()) == 500 and len(holders()) == 2
    rate = (fake_streams_server.requests["GetRecords"] - requests_before) / (time.monotonic() - clock_before)
    print(f"trigger invoked {invoked_s:.1f} s after the write; GetRecords {rate:.0f}/s over 500 shards")


def filtered_for(fake: FakeStreams, since: int) -> set[str]:
    """The shards whose children DescribeStream was asked for with ShardFilter CHILD_SHARDS,
    in the calls from number `since` on."""
    return {
        params["ShardFilter"]["ShardId"]
        for operation, params in list(fake.calls)[since:]
        if operation == "DescribeStream" and params["ShardFilter"]
    }


def listings(fake: FakeStreams, since: int) -> int:
    """How many DescribeStream pages of the full listing were asked for from call `since` on."""
    return sum(
        1 for operation, params in list(fake.calls)[since:] if operation == "DescribeStream" and not params["ShardFilter"]
    )


def split_while_read(fake: FakeStreams, parents: list[str]) -> dict[str, tuple[str, str]]:
    """Write to each of `parents`, split it, and write to both children at once, while the
    readers may be anywhere in the parent. Returns each parent's children."""
    children = {}
    for parent in parents:
        fake.records_append(shard_id=parent, count=2)
        left, right = fake.split(parent)
        fake.records_append(shard_id=left.shard_id, count=1)
        fake.records_append(shard_id=right.shard_id, count=2)
        children[parent] = (left.shard_id, right.shard_id)
    return children


def test_it_reads_each_record_once_and_parents_before_children_across_splits_of_300_shards(
    processes, fake_streams_server, tmp_path
):
    # 150 closed shards, each with an open child from the start (a rollover), 2 records in each.
    fake = FakeStreams.generated(open_shards=150, closed_generations=1, records_per_shard=2)
    source = source_on(fake_streams_server, fake)
    # No periodic discovery during the test: children are found only when their parent ends.
    started = processes(SHARDWATCH_DISCOVERY_INTERVAL_S="600")
    started.worker("worker", concurrency=2)
    started.reader("reader", concurrency=2)
    started.beat(tmp_path / "beat-schedule")

    assert wait_for(lambda: len(stored(source)) == 600, timeout=45), (
        f"the rolled-over shards were not read: {len(stored(source))} of 600 records"
    )
    open_shards = [shard_id for shard_id, shard in fake.shards.items() if not shard.closed]

    # Splits found with ShardFilter CHILD_SHARDS.
    calls_before = len(fake.calls)
    filtered_children = split_while_read(fake, open_shards[:20])
    assert wait_for(
        lambda: Shard.objects.filter(parent_shard_id__in=filtered_children).count() == 40, timeout=20
    ), "the split shards' children were not found"
    assert filtered_for(fake, calls_before) >= set(filtered_children)
    assert listings(fake, calls_before) == 0

    # The same with an endpoint that ignores the filter, as DynamoDB Local before 3.2.0: the
    # full listing finds the children.
    fake.child_shards_filter = IGNORED
    calls_before = len(fake.calls)
    listed_children = split_while_read(fake, open_shards[20:40])
    # One listing finds the children of every split parent; each parent asks when it ends.
    assert wait_for(
        lambda: Shard.objects.filter(parent_shard_id__in=listed_children).count() == 40
        and filtered_for(fake, calls_before) >= set(listed_children),
        timeout=20,
    ), "the split shards' children were not found by listing the stream"
    assert listings(fake, calls_before) >= 4  # at least one whole listing of 340 shards, 100 a page

    written = [
        (shard_id, record["dynamodb"]["SequenceNumber"]) for shard_id, shard in fake.shards.items() for record in shard.records
    ]
    assert wait_for(lambda: len(stored(source)) >= len(written), timeout=30), (
        f"{len(stored(source))} of {len(written)} records stored"
    )
    time.sleep(1)  # anything read twice would be stored now
    assert sorted(stored(source)) == sorted(written)
    ids = {}
    for shard_id, record_id in ChangeRecord.objects.filter(source=source).values_list("shard__shard_id", "id"):
        ids.setdefault(shard_id, []).append(record_id)
    for shard_id, shard in fake.shards.items():
        if shard.parent and shard.records:
            assert max(ids[shard.parent]) < min(ids[shard_id]), f"{shard_id} was read before its parent ended"
    assert Shard.objects.filter(shard_id__in=[*filtered_children, *listed_children], state=Shard.State.FINISHED).count() == 40


class Writer:
    """Writes a record to one of `shard_ids` every few hundredths of a second on a thread, while
    in its `with` block; `written` lists (shard id, sequence number) of each. `write` writes
    one at once, outside the block only: FakeStreams.records_append is for one thread at a time."""

    def __init__(self, fake: FakeStreams, shard_ids: list[str]):
        self.fake = fake
        self.shard_ids = shard_ids
        self.written: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="writer")

    def write(self, shard_id: str) -> None:
        [record] = self.fake.records_append(shard_id=shard_id, count=1)
        self.written.append((shard_id, record["dynamodb"]["SequenceNumber"]))

    def _write(self) -> None:
        number = 0
        while not self._stop.wait(0.03):
            self.write(self.shard_ids[number * 7 % len(self.shard_ids)])
            number += 1

    def __enter__(self) -> "Writer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def evenly_shared(counts: Counter, *, readers: int, shards: int) -> bool:
    return len(counts) == readers and sum(counts.values()) == shards and max(counts.values()) - min(counts.values()) <= 1


def test_it_moves_a_killed_readers_300_shards_to_the_survivor_and_shares_them_with_a_new_one(
    processes, fake_streams_server, tmp_path
):
    fake = FakeStreams.generated(open_shards=300)
    source = source_on(fake_streams_server, fake)
    shard_ids = list(fake.shards)
    started = processes()
    started.worker("worker", concurrency=1)
    first = started.reader("first")
    second = started.reader("second")
    started.beat(tmp_path / "beat-schedule")

    assert wait_for(lambda: evenly_shared(holders(), readers=2, shards=300), timeout=45), (
        f"the two readers did not share the 300 shards evenly: {holders()}"
    )
    # Each reader worker leads its own process group; its reader is its pool process.
    worker_of = {pid: os.getpgid(int(pid)) for pid in holders()}
    assert set(worker_of.values()) == {first.pid, second.pid}
    [survivor] = [pid for pid, worker in worker_of.items() if worker == second.pid]

    writer = Writer(fake, shard_ids)
    for shard_id in shard_ids[::3]:
        writer.write(shard_id)
    with writer:
        time.sleep(1)
        started.kill_hard(first)
        killed_at = time.monotonic()
        assert wait_for(lambda: holders() == {survivor: 300}, timeout=30, interval=0.25), (
            f"the survivor did not take the killed reader's shards within 30 s: {holders()}"
        )
        takeover_s = time.monotonic() - killed_at
        third = started.reader("third")
        joined_at = time.monotonic()
        assert wait_for(lambda: evenly_shared(holders(), readers=2, shards=300), timeout=30, interval=0.25), (
            f"the new reader did not get its share within 30 s: {holders()}"
        )
        share_s = time.monotonic() - joined_at
        assert {os.getpgid(int(pid)) for pid in holders()} == {second.pid, third.pid}
    for shard_id in shard_ids[1::3]:
        writer.write(shard_id)

    assert wait_for(lambda: len(stored(source)) >= len(writer.written), timeout=30), (
        f"{len(stored(source))} of {len(writer.written)} records stored"
    )
    time.sleep(1)  # anything read twice would be stored now
    assert sorted(stored(source)) == sorted(writer.written)
    print(f"survivor held all 300 {takeover_s:.1f} s after the kill; the new reader had its share in {share_s:.1f} s;"
          f" {len(writer.written)} records")


class ForeignReader:
    """Another consumer of the stream (a Lambda event source mapping, say) reading a few shards
    as fast as it can, from a thread of this process straight on the fake: it takes GetRecords
    slots on those shards before Shardwatch's reader can. `calls[shard_id]` counts its calls."""

    def __init__(self, fake: FakeStreams, shard_ids: list[str]):
        self.fake = fake
        self.shard_ids = shard_ids
        self.calls: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="foreign-reader")

    def _read(self) -> None:
        iterators = {
            shard_id: self.fake.get_shard_iterator(StreamArn=self.fake.stream_arn, ShardId=shard_id, ShardIteratorType="LATEST")["ShardIterator"]
            for shard_id in self.shard_ids
        }
        while not self._stop.wait(0.01):
            for shard_id in self.shard_ids:
                self.calls[shard_id] += 1
                try:
                    iterators[shard_id] = self.fake.get_records(ShardIterator=iterators[shard_id])["NextShardIterator"]
                except ClientError:
                    pass  # throttled too: it tries again at once, as an impatient consumer does

    def __enter__(self) -> "ForeignReader":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def get_records_by_shard(fake: FakeStreams, since: int) -> Counter:
    """GetRecords calls on each shard from call number `since` on."""
    return Counter(
        params["ShardIterator"].rsplit("|", 1)[0] for operation, params in list(fake.calls)[since:] if operation == "GetRecords"
    )


def test_it_backs_off_throttled_shards_saves_everything_and_keeps_the_others_cadence(
    processes, fake_streams_server, tmp_path
):
    # AWS's 5 GetRecords a second on a shard, shared by every reader of it.
    fake = FakeStreams.generated(open_shards=100, throttle_per_shard_s=5)
    source = source_on(fake_streams_server, fake)
    shard_ids = list(fake.shards)
    hammered, others = shard_ids[:3], shard_ids[3:]
    # A short cap on the backoff, so that the test waits seconds for the retries, not 30.
    started = processes(SHARDWATCH_MAX_BACKOFF_S="3")
    started.worker("worker", concurrency=1)
    started.reader("reader")
    started.beat(tmp_path / "beat-schedule")
    assert wait_for(lambda: sum(holders().values()) == 100, timeout=45), f"the reader did not take the shards: {holders()}"
    written = []

    def write(shard_id: str, count: int) -> None:
        written.extend(
            (shard_id, record["dynamodb"]["SequenceNumber"]) for record in fake.records_append(shard_id=shard_id, count=count)
        )

    with ForeignReader(fake, hammered) as foreign:
        for shard_id in hammered:
            write(shard_id, 3)
        # The reader may win a slot now and then, which clears the error until the next call.
        shown = set()

        def each_shows_the_throttling():
            shown.update(
                Shard.objects.filter(
                    shard_id__in=hammered, last_error__startswith="LimitExceededException", error_count__gte=2
                ).values_list("shard_id", flat=True)
            )
            return shown == set(hammered)

        assert wait_for(each_shows_the_throttling, timeout=15), f"only {shown} showed LimitExceededException"
        # While those are throttled, the other shards are read at their cadence.
        calls_before, foreign_before, clock_before = len(fake.calls), foreign.calls.copy(), time.monotonic()
        written_before = len(written)
        for shard_id in others[::10]:
            write(shard_id, 2)
        assert wait_for(lambda: set(written[written_before:]) <= set(stored(source)), timeout=10), (
            "the other shards' records were not saved while a few shards were throttled"
        )
        time.sleep(max(0.0, 6 - (time.monotonic() - clock_before)))
        window_s = time.monotonic() - clock_before
        polled = get_records_by_shard(fake, calls_before)
        shardwatch_calls = {shard_id: polled[shard_id] - (foreign.calls[shard_id] - foreign_before[shard_id]) for shard_id in hammered}
    print(f"in {window_s:.1f} s: the reader's calls on each throttled shard {shardwatch_calls}; "
          f"on the others {min(polled[s] for s in others)} to {max(polled[s] for s in others)}; throttled {fake.throttled}")
    # Backed off: under two calls a second on a throttled shard, on average. Retrying each
    # after the least wait (0.2 s), as without backoff, makes about three (botocore retries
    # each throttled call once, after up to a second).
    assert sum(shardwatch_calls.values()) < window_s * 2 * len(hammered)
    assert min(polled[shard_id] for shard_id in others) >= window_s / 2  # idle shards: once a second
    assert not Shard.objects.filter(shard_id__in=others).exclude(error_count=0, last_error="").exists()

    assert wait_for(lambda: len(stored(source)) >= len(written), timeout=20), (
        f"{len(stored(source))} of {len(written)} records stored after the throttling stopped"
    )
    assert wait_for(lambda: not Shard.objects.filter(error_count__gt=0).exists(), timeout=10)
    assert sorted(stored(source)) == sorted(written)
    assert StreamSource.objects.get(pk=source.pk).status == StreamSource.Status.ACTIVE  # throttling is not an outage


def test_it_recovers_a_few_of_300_shards_from_expired_iterators_and_trimmed_reads_in_one_reader(fake_streams_server):
    # One reader in this process (tests/support/readers.py), driven round by round: the error
    # paths of streams.reading under a Reader that holds 300 shards, the rest unaffected.
    fake = FakeStreams.generated(open_shards=300)
    source = source_on(fake_streams_server, fake)
    shard_ids = list(fake.shards)
    expiring, lost, spurious, rest = shard_ids[10:13], shard_ids[100:102], shard_ids[200:202], shard_ids[202:]
    thirty_hours_ago = timezone.now() - timedelta(hours=30)
    for shard_id in shard_ids:
        fake.records_append(shard_id=shard_id, count=2, written_at=thirty_hours_ago if shard_id in lost else None)
    readers = Readers(source_ids=[source.pk], threads=8)
    try:
        readers.until_idle()  # holds every shard, and each one's NextShardIterator
        checkpoints = dict(Shard.objects.values_list("shard_id", "checkpoint"))
        for shard_id in expiring:
            fake.records_append(shard_id=shard_id, count=2)
            # Iterators live 15 minutes.
            fake.errors[("GetRecords", shard_id)] = [aws_error("ExpiredIteratorException", "GetRecords")]
        for shard_id in lost:
            # A day passed: the record after the checkpoint went past the retention and was trimmed.
            fake.records_append(shard_id=shard_id, count=1, written_at=timezone.now() - timedelta(hours=25))
            fake.records_append(shard_id=shard_id, count=1, written_at=timezone.now() - timedelta(hours=2))
            fake.shards[shard_id].trim(3)
        for shard_id in spurious:
            # As DynamoDB Local raises it (aws/aws-sdk-java#2923): nothing owed can be trimmed.
            fake.records_append(shard_id=shard_id, count=1)
            fake.errors[("GetRecords", shard_id)] = [aws_error("TrimmedDataAccessException", "GetRecords", TRIMMED_MESSAGE)]
        for shard_id in rest[::5]:
            fake.records_append(shard_id=shard_id, count=1)
        calls_before = len(fake.calls)

        readers.until_idle()

        held = len(readers.reader.readings)
    finally:
        readers.stop()

    trimmed_away = {(shard_id, fake.shards[shard_id].records[2]["dynamodb"]["SequenceNumber"]) for shard_id in lost}
    written = {
        (shard_id, record["dynamodb"]["SequenceNumber"]) for shard_id, shard in fake.shards.items() for record in shard.records
    }
    assert sorted(stored(source)) == sorted(written - trimmed_away)
    assert sorted(Gap.objects.filter(source=source).values_list("shard__shard_id", "after_sequence_number")) == sorted(
        (shard_id, checkpoints[shard_id]) for shard_id in lost
    )
    iterators = [params for operation, params in list(fake.calls)[calls_before:] if operation == "GetShardIterator"]
    assert sorted((params["ShardId"], params["Type"], params["SequenceNumber"]) for params in iterators) == sorted(
        [(shard_id, "AFTER_SEQUENCE_NUMBER", checkpoints[shard_id]) for shard_id in expiring]
        + [(shard_id, "TRIM_HORIZON", None) for shard_id in [*lost, *spurious]]
    ), "only the shards that failed were read from a new iterator"
    assert held == 300
    assert not Shard.objects.exclude(error_count=0, last_error="").exists()

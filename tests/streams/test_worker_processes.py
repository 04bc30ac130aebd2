"""The whole pipeline in real processes: Celery workers and beat over Redis, DynamoDB Local,
PostgreSQL. Workers are killed with SIGKILL mid-stream; nothing may be lost or doubled."""

import os
import signal
import threading
import time

import pytest

from streams.models import ChangeRecord, Shard
from streams.sources import source_add
from tests.support.processes import Processes, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def processes(tmp_path):
    started = Processes(SHARDWATCH_DISCOVERY_INTERVAL_S="2", SHARDWATCH_DISPATCH_INTERVAL_S="1")
    yield started
    started.stop_all()


def polled_by() -> set[str]:
    return set(Shard.objects.exclude(last_polled_by="").values_list("last_polled_by", flat=True))


def test_it_loses_and_doubles_nothing_when_a_worker_is_killed_mid_stream(processes, make_table, dynamodb, tmp_path):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    processes.worker("worker")
    processes.reader("first")
    processes.reader("second")
    processes.beat(tmp_path / "beat-schedule")

    written = []
    stop = threading.Event()

    def write():
        number = 0
        while not stop.is_set() and number < 400:
            key = f"order-{number:04d}"
            dynamodb.put_item(TableName=table, Item={"pk": {"S": key}, "n": {"N": str(number)}})
            written.append(("INSERT", key))
            if number % 3 == 0:
                dynamodb.update_item(
                    TableName=table, Key={"pk": {"S": key}}, UpdateExpression="SET n = n + :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )
                written.append(("MODIFY", key))
            number += 1
            time.sleep(0.02)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert wait_for(lambda: ChangeRecord.objects.filter(source=source).count() >= 50, timeout=30)
        # Kill whichever worker process polled last, so the kill lands on the reader at work.
        # Each worker leads its own process group, so a pool child's group names its worker.
        holder_pid = int(Shard.objects.get(stream__source=source).last_polled_by.rsplit(":", 1)[1])
        victim = next(p for p in processes.started if p.pid == os.getpgid(holder_pid))
        processes.kill_hard(victim)
        killed_at = time.monotonic()
        before = polled_by()
        assert wait_for(lambda: polled_by() - before, timeout=30), "no other process took the shard over"
        takeover_s = time.monotonic() - killed_at
    finally:
        writer.join()

    expected = len(written)
    assert wait_for(lambda: ChangeRecord.objects.filter(source=source).count() >= expected, timeout=60)
    time.sleep(1)  # anything doubled would arrive now
    records = list(ChangeRecord.objects.filter(source=source).values_list("event_name", "keys"))
    assert sorted((event, keys["pk"]["S"]) for event, keys in records) == sorted(written)
    assert takeover_s < 30


def test_it_shares_shards_between_worker_processes(processes, make_table, dynamodb, tmp_path):
    tables = [make_table(range_key=False) for _ in range(4)]
    sources = [source_add(table_name=table, region="us-east-1") for table in tables]
    processes.worker("worker", concurrency=1)
    processes.reader("one")
    processes.reader("two")
    processes.beat(tmp_path / "beat-schedule")

    seen = set()

    def every_source_read_and_both_workers_seen():
        for table in tables:
            dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{time.monotonic_ns()}"}})
        seen.update(polled_by())
        all_read = all(ChangeRecord.objects.filter(source=source).exists() for source in sources)
        return all_read and len({entry.rsplit(":", 1)[1] for entry in seen}) >= 2

    assert wait_for(every_source_read_and_both_workers_seen, timeout=45, interval=0.5)


def holders() -> dict[int, str]:
    """Each held shard's pk and the host:pid of the reader holding it."""
    return {
        pk: polled_by_name
        for pk, polled_by_name in Shard.objects.exclude(lease_owner="").values_list("pk", "last_polled_by")
    }


@pytest.mark.parametrize("signalled", ["main process", "process group"])
def test_it_hands_a_stopped_readers_shards_over_within_seconds(signalled, processes, make_table, dynamodb, tmp_path):
    # SIGTERM to the main process is Celery's warm shutdown (`kill PID`, `celery control
    # shutdown`); to the process group is what honcho and systemd send.
    tables = [make_table(range_key=False) for _ in range(4)]
    sources = [source_add(table_name=table, region="us-east-1") for table in tables]
    processes.worker("worker", concurrency=1)
    staying = processes.reader("staying")
    leaving = processes.reader("leaving")
    processes.beat(tmp_path / "beat-schedule")

    def group_of(name: str) -> int:
        return os.getpgid(int(name.rsplit(":", 1)[1]))

    assert wait_for(
        lambda: len(holders()) == 4 and {group_of(n) for n in holders().values()} == {staying.pid, leaving.pid},
        timeout=45,
    ), f"the two readers did not share the shards: {holders()}"
    written = []
    for number, table in enumerate(tables):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"before-{number}"}})
        written.append(f"before-{number}")

    if signalled == "main process":
        os.kill(leaving.pid, signal.SIGTERM)
    else:
        os.killpg(leaving.pid, signal.SIGTERM)
    stopped_at = time.monotonic()
    assert wait_for(
        lambda: len(holders()) == 4 and {group_of(n) for n in holders().values()} == {staying.pid},
        timeout=20,
        interval=0.1,
    ), f"the staying reader did not take every shard: {holders()}"
    handoff_s = time.monotonic() - stopped_at
    leaving.wait(timeout=15)

    for number, table in enumerate(tables):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"after-{number}"}})
        written.append(f"after-{number}")
    source_ids = [source.pk for source in sources]
    assert wait_for(lambda: ChangeRecord.objects.filter(source_id__in=source_ids).count() >= len(written), timeout=30)
    time.sleep(1)  # anything doubled would arrive now
    keys = [keys["pk"]["S"] for keys in ChangeRecord.objects.filter(source_id__in=source_ids).values_list("keys", flat=True)]
    assert sorted(keys) == sorted(written)
    assert handoff_s < 5, f"handoff took {handoff_s:.1f} s"


def test_it_hands_shards_on_without_a_gap_when_a_readers_time_is_up(make_table, dynamodb, tmp_path):
    # Each reader task runs for 5 s here (SHARDWATCH_READER_RUN_S), so the next reader task takes
    # the shards over several times while records keep coming.
    processes = Processes(
        SHARDWATCH_DISCOVERY_INTERVAL_S="2", SHARDWATCH_DISPATCH_INTERVAL_S="1", SHARDWATCH_READER_RUN_S="5"
    )
    try:
        tables = [make_table(range_key=False) for _ in range(2)]
        sources = [source_add(table_name=table, region="us-east-1") for table in tables]
        processes.worker("worker", concurrency=1)
        processes.reader("reader", concurrency=1)
        processes.beat(tmp_path / "beat-schedule")
        assert wait_for(lambda: len(holders()) == 2, timeout=30)

        written, unheld_since, longest_unheld_s, owners = [], {}, 0.0, set()
        started = time.monotonic()
        number = 0
        while time.monotonic() - started < 16:
            for table in tables:
                dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k-{number:04d}"}})
                written.append(f"k-{number:04d}")
                number += 1
            rows = dict(Shard.objects.filter(stream__source__in=sources).values_list("pk", "lease_owner"))
            owners.update(owner for owner in rows.values() if owner)
            now = time.monotonic()
            for pk, owner in rows.items():
                if owner:
                    if pk in unheld_since:
                        longest_unheld_s = max(longest_unheld_s, now - unheld_since.pop(pk))
                else:
                    unheld_since.setdefault(pk, now)
            time.sleep(0.05)

        source_ids = [source.pk for source in sources]
        assert wait_for(lambda: ChangeRecord.objects.filter(source_id__in=source_ids).count() >= len(written), timeout=30)
        time.sleep(1)  # anything doubled would arrive now
        keys = [k["pk"]["S"] for k in ChangeRecord.objects.filter(source_id__in=source_ids).values_list("keys", flat=True)]
        assert sorted(keys) == sorted(written)
        assert len(owners) >= 3, "the readers' time did not run out: no handoff happened"
        assert longest_unheld_s < 2.0, f"a shard had no reader for {longest_unheld_s:.1f} s"
    finally:
        processes.stop_all()

"""The whole pipeline in real processes: Celery workers and beat over Redis, DynamoDB Local,
PostgreSQL. Workers are killed with SIGKILL mid-stream; nothing may be lost or doubled."""

import os
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

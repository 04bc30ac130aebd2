"""Triggers in real processes: Celery workers and beat over Redis, DynamoDB Local, PostgreSQL.
The worker running a handler is killed with SIGKILL mid-invocation, and the handler's host
process dies with it; another worker takes the cursor over once its lease runs out, and no
record is skipped. Delivery is at least once, as on
Lambda: only the batch in flight when the worker died may arrive twice.
"""

import os
import time
from collections import Counter

import pytest

from streams.models import ChangeRecord
from streams.sources import source_add
from tests.support.processes import Processes, wait_for
from tests.handlers.slow import deliveries
from workers.models import Trigger, TriggerCursor

pytestmark = pytest.mark.django_db(transaction=True)

WRITES = 30
# The lease a runner takes on a cursor is SHARDWATCH_TRIGGER_LEASE_S plus the trigger's
# timeout (workers.cursors.lease_duration): 5 s + 5 s here, so a dead runner's cursor is free again
# about 10 s after its last invocation began.
LEASE_S = 5
TIMEOUT_S = 5


@pytest.fixture
def handler_dir(tmp_path):
    directory = tmp_path / "handler"
    directory.mkdir()
    return directory


@pytest.fixture
def processes(handler_dir):
    started = Processes(
        SHARDWATCH_DISCOVERY_INTERVAL_S="2",
        SHARDWATCH_DISPATCH_INTERVAL_S="1",
        SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S="1",
        SHARDWATCH_TRIGGER_LEASE_S=str(LEASE_S),
        SHARDWATCH_SLOW_HANDLER_DIR=str(handler_dir),
        SHARDWATCH_SLOW_HANDLER_SLEEP_S="1",
    )
    yield started
    started.stop_all()


def in_flight(directory) -> dict | None:
    """The batch a handler is working on now, if any: started and not yet ended."""
    ended = {entry["request_id"] for entry in deliveries(directory) if entry["event"] == "end"}
    started = [entry for entry in deliveries(directory) if entry["event"] == "start" and entry["request_id"] not in ended]
    return started[-1] if started else None


def test_it_skips_no_record_when_the_worker_running_the_handler_is_killed(processes, make_table, dynamodb, tmp_path, handler_dir):
    table = make_table(range_key=False, prefix="slow")
    source = source_add(table_name=table, region="us-east-1")
    trigger = Trigger.objects.create(
        name="slow", source=source, target=Trigger.Target.PYTHON, handler="tests.handlers.slow.record_keys_slowly",
        batch_size=3, timeout_s=TIMEOUT_S,
    )
    processes.worker("first")
    processes.worker("second")
    processes.reader("reader")
    processes.beat(tmp_path / "beat-schedule")
    written = []
    for number in range(WRITES):
        key = f"item-{number:03d}"
        dynamodb.put_item(TableName=table, Item={"pk": {"S": key}})
        written.append(key)

    # Kill the worker whose child is inside the handler, after a couple of batches are done.
    # The handler sleeps 1 s per batch, so the kill lands well inside the invocation.
    caught = {}

    def second_batch_under_way():
        done = sum(1 for entry in deliveries(handler_dir) if entry["event"] == "end")
        caught["batch"] = in_flight(handler_dir) if done >= 2 else None
        return caught["batch"] is not None

    assert wait_for(second_batch_under_way, timeout=60), "the handler never got going; see test-artifacts/*.log"
    victim_batch = caught["batch"]
    victim = next(p for p in processes.started if p.pid == os.getpgid(victim_batch["worker_pid"]))
    processes.kill_hard(victim)
    killed_at = time.monotonic()

    last_key = written[-1]

    def all_delivered_and_cursor_at_end():
        entries = deliveries(handler_dir)
        ended = {entry["request_id"] for entry in entries if entry["event"] == "end"}
        completed = {key for entry in entries if entry["event"] == "start" and entry["request_id"] in ended for key in entry["keys"]}
        if not set(written) <= completed:
            return False
        newest = ChangeRecord.objects.filter(source=source).order_by("-sequence_key").first()
        cursor = TriggerCursor.objects.filter(trigger=trigger).first()
        return bool(newest and cursor) and newest.partition_key == last_key and cursor.position == newest.sequence_key

    assert wait_for(all_delivered_and_cursor_at_end, timeout=90, interval=0.5), (
        f"not every record was delivered; deliveries: {deliveries(handler_dir)}"
    )
    recovered_s = time.monotonic() - killed_at
    print(f"every record delivered {recovered_s:.1f} s after the kill")
    time.sleep(1.5)  # a doubled batch would arrive now

    entries = deliveries(handler_dir)
    starts = [entry for entry in entries if entry["event"] == "start"]
    sent = [key for entry in starts for key in entry["keys"]]
    # Every record reached the handler, in write order the first time.
    assert list(dict.fromkeys(sent)) == written
    # Only the batch the killed worker was running came again, once.
    doubled = {key: count for key, count in Counter(sent).items() if count > 1}
    assert set(doubled) <= set(victim_batch["keys"]) and set(doubled.values()) <= {2}, doubled
    assert set(victim_batch["keys"]) <= set(doubled), "the killed batch was never sent again"
    # The killed batch never finished in the killed process; the rest ran elsewhere.
    assert not any(entry["event"] == "end" and entry["request_id"] == victim_batch["request_id"] for entry in entries)
    assert victim_batch["pid"] not in {entry["pid"] for entry in starts[starts.index(victim_batch) + 1:]}
    assert ChangeRecord.objects.filter(source=source).count() == WRITES
    cursor = TriggerCursor.objects.get(trigger=trigger)
    assert cursor.attempt == 0 and cursor.position == ChangeRecord.objects.filter(source=source).order_by("-sequence_key").first().sequence_key
    assert recovered_s < 60

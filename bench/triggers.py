"""Trigger benchmarks.

write_to_handler_ms_p50 / _p99: put_item on DynamoDB Local to a Python handler receiving the
record, through the real pipeline (a Celery worker and beat, the shard reader, the after-save
kick of dispatch_triggers, the trigger runner), with BatchSize 1 and no batching window. Each
item carries its own put time; the handler notes time.time() at entry in a Redis list.

trigger_overhead_ms_per_batch: in this process, a runner working through a backlog in batches
of 100 records with a no-op handler: the time outside the handler per batch, which is reading
the batch, building the Lambda event, the handler thread and its copy of the event, recording
the invocation and moving the cursor. trigger_overhead_ms_one_batch_per_run: the same when each
batch has a runner of its own (records trickling in), which also loads the cursor and trigger.
"""

import base64
import json
import os
import random
import statistics
import time
import uuid

import boto3
import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bench import workload
from bench.common import ROOT, percentile, reset_tables
from bench.handlers import HANDLER_KEY_ENV
from bench.ingest import bench_source, fresh_shard
from streams.ingest import records_build, records_insert
from streams.models import Shard
from streams.sources import source_add
from tests.support.processes import Processes
from workers.cursors import cursors_claim, cursors_ensure
from workers.models import Invocation, Trigger, TriggerCursor
from workers.runner import cursor_process, cursor_run

WRITES = 300
RATE_PER_S = 20.0
OVERHEAD_BATCH_SIZE = 100
OVERHEAD_BATCHES = 200
WARM_UP_S = 1.0


def bench_write_to_handler(*, writes: int = WRITES, rate_per_s: float = RATE_PER_S) -> dict:
    reset_tables()
    table = f"bench-trigger-{uuid.uuid4().hex[:8]}"
    workload.create_table(table)
    source = source_add(table_name=table, region="us-east-1")
    trigger = Trigger.objects.create(
        name=f"bench-{table}", source=source, target=Trigger.Target.PYTHON,
        handler="bench.handlers.handler_note_arrival", batch_size=1, maximum_batching_window_s=0,
    )
    key = f"shardwatch-bench-handler-{uuid.uuid4().hex}"
    store = redis.Redis.from_url(settings.REDIS_URL)
    processes = Processes(DJANGO_SETTINGS_MODULE="bench.settings", **{HANDLER_KEY_ENV: key})
    processes.worker("bench-triggers", concurrency=2)
    processes.reader("bench-triggers-reader")
    processes.beat(ROOT / "var" / f"bench-triggers-beat-{os.getpid()}")
    client = boto3.client("dynamodb")

    def write(prefix: str, count: int) -> list[str]:
        keys = []
        for number in range(count):
            pk = f"{prefix}-{number:05d}"
            client.put_item(TableName=table, Item={"pk": {"S": pk}, "written_at": {"N": repr(time.time())}})
            keys.append(pk)
            time.sleep(1 / rate_per_s)
        return keys

    def arrivals(keys: list[str], timeout_s: float = 60) -> dict[str, float]:
        wanted = set(keys)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = {}
            for raw in store.lrange(key, 0, -1):
                entry = json.loads(raw)
                # At least once: a record sent twice counts at its first arrival.
                if entry["pk"] in wanted and entry["pk"] not in seen:
                    seen[entry["pk"]] = (entry["arrived"] - entry["written"]) * 1000
            if len(seen) == len(wanted):
                return seen
            time.sleep(0.2)
        raise RuntimeError(f"only {len(seen)} of {len(wanted)} records reached the handler; see test-artifacts/bench-triggers.log")

    try:
        deadline = time.monotonic() + 60
        while not Shard.objects.filter(stream__source=source, last_polled_at__isnull=False).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no worker polled the shard within 60 s; see test-artifacts/bench-triggers.log")
            time.sleep(0.2)
        # The first write after quiet meets an idle-cadence reader; measured on its own, as in
        # the write-to-database benchmark. Then a warm-up, then the writes that count.
        [cold_ms] = arrivals(write("cold", 1)).values()
        arrivals(write("warm", 10))
        measured = write("lat", writes)
        latencies_by_key = arrivals(measured)
    finally:
        processes.stop_all()
        store.delete(key)
    latencies = [latencies_by_key[pk] for pk in measured]
    (ROOT / "test-artifacts" / "write-to-handler-latencies.json").write_text(json.dumps([round(v, 1) for v in latencies]))
    invocations = Invocation.objects.filter(trigger=trigger)
    return {
        "write_to_handler_writes": len(latencies),
        "write_to_handler_ms_first_after_idle": round(cold_ms, 1),
        "write_to_handler_ms_p50": round(percentile(latencies, 0.50), 1),
        "write_to_handler_ms_p95": round(percentile(latencies, 0.95), 1),
        "write_to_handler_ms_p99": round(percentile(latencies, 0.99), 1),
        "write_to_handler_ms_max": round(max(latencies), 1),
        "write_to_handler_invocations": invocations.count(),
        "write_to_handler_failed_invocations": invocations.exclude(outcome="success").count(),
    }


def _stream_records(count: int) -> list[dict]:
    """GetRecords-shaped INSERTs of realistic order items, in sequence order."""
    rng = random.Random(11)
    now = time.time()
    records = []
    for number in range(count):
        image = workload.order_item(rng, number)
        image["signature"] = {"B": base64.b64encode(image["signature"]["B"]).decode()}  # as the stream sends binary
        records.append({
            "eventID": uuid.uuid4().hex, "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {"ApproximateCreationDateTime": now, "Keys": {"pk": image["pk"]}, "NewImage": image,
                         "SequenceNumber": str(10**20 + number), "SizeBytes": len(json.dumps(image)),
                         "StreamViewType": "NEW_AND_OLD_IMAGES"},
        })
    return records


def bench_trigger_overhead(*, batches: int = OVERHEAD_BATCHES, batch_size: int = OVERHEAD_BATCH_SIZE) -> dict:
    reset_tables()
    source, stream = bench_source(f"bench-overhead-{uuid.uuid4().hex[:8]}")
    shard = Shard.objects.select_related("stream__source").get(pk=fresh_shard(stream, "bench").pk)
    rows, _ = records_build(records=_stream_records(batches * batch_size), shard=shard, received_at=timezone.now())
    with transaction.atomic():
        for start in range(0, len(rows), 1000):
            records_insert(rows[start:start + 1000])

    def trigger_new():
        trigger = Trigger.objects.create(
            name=f"bench-overhead-{uuid.uuid4().hex[:6]}", source=source, target=Trigger.Target.PYTHON,
            handler="bench.handlers.handler_noop", batch_size=batch_size,
        )
        cursors_ensure(trigger=trigger)
        [(cursor_id, owner)] = cursors_claim(trigger_id=trigger.pk)
        return trigger, cursor_id, owner

    # A backlog, as a runner task meets it: one run sends batch after batch. First a short run
    # of another trigger warms this process as any worker that has run triggers before is warm:
    # the handler's host, the channel layer's connection, Django's and psycopg's caches.
    warm_up, warm_cursor_id, warm_owner = trigger_new()
    cursor_run(cursor_id=warm_cursor_id, owner=warm_owner, budget_s=WARM_UP_S)
    trigger, cursor_id, owner = trigger_new()
    started = time.perf_counter()
    cursor_run(cursor_id=cursor_id, owner=owner)
    finished = time.perf_counter()
    spans = [(answer["entered"], answer["left"]) for answer in _answers(trigger)]
    # The time outside the handler for each batch: from leaving the handler of one batch to
    # entering the next (settling one, reading and building the next), then the run's end.
    edges = [started] + [end for _, end in spans]
    outside = [(entered - edges[index]) * 1000 for index, (entered, _) in enumerate(spans)]
    outside[-1] += (finished - spans[-1][1]) * 1000
    handler_ms = sum(end - entered for entered, end in spans) * 1000 / len(spans)
    _check_invocations(Invocation.objects.filter(trigger=trigger), batches=batches, batch_size=batch_size)

    # A run per batch, as when records trickle in: the runner loads its cursor and trigger and
    # reads every time.
    trigger, cursor_id, owner = trigger_new()
    single = []
    try:
        for _ in range(min(batches, 50)):
            started = time.perf_counter()
            cursor_process(cursor_id=cursor_id, owner=owner)
            single.append((time.perf_counter() - started) * 1000)
    finally:
        TriggerCursor.objects.lease_release(cursor_id, owner=owner)
    invocations = Invocation.objects.filter(trigger=trigger)
    _check_invocations(invocations, batches=len(single), batch_size=batch_size)
    invoke_ms = statistics.mean(invocations.values_list("duration_ms", flat=True))  # target_invoke, thread included
    return {
        "trigger_overhead_batches": len(spans),
        "trigger_overhead_batch_size": batch_size,
        "trigger_overhead_ms_per_batch": round(statistics.mean(outside), 2),
        "trigger_overhead_ms_per_batch_p50": round(percentile(outside, 0.50), 2),
        "trigger_overhead_ms_per_batch_p99": round(percentile(outside, 0.99), 2),
        "trigger_overhead_handler_ms_per_batch": round(handler_ms, 3),
        "trigger_overhead_ms_one_batch_per_run": round(statistics.mean(single) - handler_ms, 2),
        "trigger_overhead_ms_one_batch_per_run_p99": round(percentile(single, 0.99) - handler_ms, 2),
        "trigger_overhead_target_invoke_ms_per_batch": round(invoke_ms, 2),
    }


def _answers(trigger) -> list[dict]:
    return [json.loads(body) for body in Invocation.objects.filter(trigger=trigger).order_by("id").values_list("response_body", flat=True)]


def _check_invocations(invocations, *, batches: int, batch_size: int) -> None:
    if invocations.count() != batches or invocations.exclude(outcome="success").exists():
        raise RuntimeError(f"expected {batches} successful invocations, got {list(invocations.values_list('outcome', flat=True))}")
    if any(count != batch_size for count in invocations.values_list("record_count", flat=True)):
        raise RuntimeError("a batch was not full")


def bench_triggers() -> dict:
    results = bench_trigger_overhead()
    results.update(bench_write_to_handler())
    return results

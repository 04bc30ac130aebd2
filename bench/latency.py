"""Write-to-database latency: put_item on DynamoDB Local to the worker's after-commit push,
through real Celery worker and beat processes reading the shard."""

import asyncio
import json
import os
import time
import uuid

import boto3
from channels.layers import get_channel_layer

from bench import workload
from bench.common import ROOT, percentile, reset_tables
from streams.models import Shard
from streams.sources import source_add
from tests.support.processes import Processes


def bench_write_to_db(*, writes: int = 500, rate_per_s: float = 20.0) -> dict:
    reset_tables()
    table = f"bench-latency-{uuid.uuid4().hex[:8]}"
    workload.create_table(table)
    source = source_add(table_name=table, region="us-east-1")
    processes = Processes(DJANGO_SETTINGS_MODULE="bench.settings")
    processes.worker("bench", concurrency=2)
    processes.reader("bench-reader")
    processes.beat(ROOT / "var" / f"bench-beat-{os.getpid()}")
    try:
        # The first dispatch runs within SHARDWATCH_DISPATCH_INTERVAL_S of beat starting.
        deadline = time.monotonic() + 60
        while not Shard.objects.filter(stream__source=source, last_polled_at__isnull=False).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no worker polled the shard within 60 s; see test-artifacts/bench.log")
            time.sleep(0.2)
        # An idle shard is polled once a second (SHARDWATCH_IDLE_POLL_INTERVAL_S) until records
        # flow, then four times a second. The first write after quiet is measured on its own;
        # the 500 that count are written once the reader is at its working cadence.
        [cold_ms] = asyncio.run(_measure(source=source, table=table, writes=1, rate_per_s=rate_per_s, prefix="cold"))
        asyncio.run(_measure(source=source, table=table, writes=10, rate_per_s=rate_per_s, prefix="warm"))
        latencies = asyncio.run(_measure(source=source, table=table, writes=writes, rate_per_s=rate_per_s))
    finally:
        processes.stop_all()
    # In write order, for looking at where the tail comes from.
    (ROOT / "test-artifacts" / "write-to-db-latencies.json").write_text(json.dumps([round(v, 1) for v in latencies]))
    return {
        "write_to_db_writes": len(latencies),
        "write_to_db_ms_first_after_idle": round(cold_ms, 1),
        "write_to_db_ms_p50": round(percentile(latencies, 0.50), 1),
        "write_to_db_ms_p95": round(percentile(latencies, 0.95), 1),
        "write_to_db_ms_p99": round(percentile(latencies, 0.99), 1),
    }


async def _measure(*, source, table, writes, rate_per_s, prefix="lat") -> list[float]:
    """put_item time to the moment the worker's after-commit push arrives. The push is sent
    from transaction.on_commit, so its arrival is the commit plus one Redis hop (about 1 ms)."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(source.group_name, channel)
    client = boto3.client("dynamodb")
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def writer():
        for number in range(writes):
            key = f"{prefix}-{number:05d}"
            sent[f"pk={key}"] = time.time()
            await loop.run_in_executor(None, lambda k=key: client.put_item(TableName=table, Item={"pk": {"S": k}}))
            await asyncio.sleep(1 / rate_per_s)

    async def receiver():
        while len(arrived) < writes:
            message = await asyncio.wait_for(layer.receive(channel), 30)
            now = time.time()
            for row in message["records"]:
                arrived.setdefault(row["key"], now)

    await asyncio.gather(writer(), receiver())
    await layer.group_discard(source.group_name, channel)
    return [(arrived[key] - sent[key]) * 1000 for key in sent]

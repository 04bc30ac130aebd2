"""The writer of the live benchmarks: a process of its own that puts items at a steady rate,
each carrying its own put time.

It runs in a spawned process, which imports this module afresh: so this module imports no
Django models (Django is not set up there), only boto3 and the workload.
"""

import asyncio
import json
import multiprocessing
import random
import threading
import time
from pathlib import Path

import boto3

from bench import workload
from bench.common import ARTIFACTS, percentile


def item_put_time(partition_key: str) -> float | None:
    """The put time a written item carries in its key (`<prefix>-<n>@<epoch seconds>`)."""
    _, at, stamp = partition_key.rpartition("@")
    if not at:
        return None
    try:
        return float(stamp)
    except ValueError:
        return None


def _write(table: str, prefix: str, count: int, rate_per_s: float, threads: int, out: str) -> None:
    """In a process of its own, so its CPU and GIL never delay the receivers' clocks. Puts
    `count` items at `rate_per_s`, spread over `threads` connections so that one slow put does
    not hold the rest back. Each key ends with the wall-clock time just before its put_item."""
    rng = random.Random(11)
    items = [workload.order_item(rng, number) for number in range(count)]
    clients = [boto3.client("dynamodb") for _ in range(threads)]
    for client in clients:  # connect before the clock starts
        client.describe_table(TableName=table)
    lock = threading.Lock()
    numbers = iter(range(count))
    written: list[dict] = []
    started = time.time() + 0.2

    def run(client):
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            due = started + number / rate_per_s
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            put_at = time.time()
            key = f"{prefix}-{number:05d}@{put_at:.6f}"
            item = {**items[number], "pk": {"S": key}, "written_at": {"N": f"{put_at:.6f}"}}
            client.put_item(TableName=table, Item=item)
            with lock:
                written.append({"key": key, "due": due, "put_at": put_at, "done_at": time.time()})

    workers = [threading.Thread(target=run, args=(client,)) for client in clients]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    Path(out).write_text(json.dumps(written))


def start_writer(*, table: str, prefix: str, count: int, rate_per_s: float, threads: int = 16):
    """Start the writer process; returns (process, path of the JSON list of writes it leaves)."""
    out = ARTIFACTS / f"bench-writes-{prefix}.json"
    out.unlink(missing_ok=True)
    process = multiprocessing.get_context("spawn").Process(
        target=_write, args=(table, prefix, count, rate_per_s, threads, str(out)), daemon=True
    )
    process.start()
    return process, out


def writer_summary(writes: list[dict]) -> dict:
    """How the writer kept its pace: achieved rate, and how late puts started against schedule."""
    if len(writes) < 2:
        return {"writes": len(writes)}
    first, last = min(w["put_at"] for w in writes), max(w["put_at"] for w in writes)
    lateness = [(w["put_at"] - w["due"]) * 1000 for w in writes]
    put_ms = [(w["done_at"] - w["put_at"]) * 1000 for w in writes]
    return {
        "writes": len(writes),
        "rate_per_s": round((len(writes) - 1) / (last - first), 1),
        "start_late_ms_p99": round(percentile(lateness, 0.99), 1),
        "put_item_ms_p50": round(percentile(put_ms, 0.50), 1),
        "put_item_ms_p99": round(percentile(put_ms, 0.99), 1),
    }


async def write_items(stack, *, prefix: str, count: int, rate_per_s: float) -> list[dict]:
    """Run the writer on `stack`'s table (a bench.live.Stack) to its end without blocking the
    event loop; returns its writes."""
    process, out = start_writer(table=stack.table, prefix=prefix, count=count, rate_per_s=rate_per_s)
    await asyncio.get_running_loop().run_in_executor(None, process.join)
    if process.exitcode != 0:
        raise RuntimeError(f"the writer process exited with {process.exitcode}")
    return json.loads(out.read_text())

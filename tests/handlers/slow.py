"""A slow Python handler for tests that kill the worker running it (tests/workers/test_trigger_processes.py).

It runs in a handler host of a Celery worker, so it reports through a file: one JSON line when
a batch arrives (its keys, its pid and the worker child's pid) and one when it is done. The directory comes from
SHARDWATCH_SLOW_HANDLER_DIR, set in the worker's environment by the test.
"""

import json
import os
import time
from pathlib import Path


def _note(entry: dict) -> None:
    # One short write per line to a file opened for appending: lines from two processes
    # never interleave, and a process killed mid-batch leaves whole lines behind.
    with open(Path(os.environ["SHARDWATCH_SLOW_HANDLER_DIR"]) / "deliveries.jsonl", "a") as log:
        log.write(json.dumps(entry) + "\n")


def record_keys_slowly(event, context):
    keys = [record["dynamodb"]["Keys"]["pk"]["S"] for record in event["Records"]]
    # It runs in a handler host whose parent is the worker's pool process.
    request = {"pid": os.getpid(), "worker_pid": os.getppid(), "request_id": context.aws_request_id}
    _note({"event": "start", "keys": keys, **request})
    time.sleep(float(os.environ.get("SHARDWATCH_SLOW_HANDLER_SLEEP_S", "1")))
    _note({"event": "end", **request})


def deliveries(directory: Path) -> list[dict]:
    path = directory / "deliveries.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

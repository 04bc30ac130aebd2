"""The benchmarks' trigger handlers. They run in handler hosts (workers/handler_host.py), so
this module imports only what they use: a host's cold start imports it."""

import json
import os
import time

HANDLER_KEY_ENV = "SHARDWATCH_BENCH_HANDLER_KEY"


def handler_note_arrival(event, context):
    """Runs in a Celery worker's handler host: note when each record reached the handler."""
    # Imported here, not at the top (no cycle): a host's cold start imports this module, and
    # only this handler needs redis, not the no-op one whose overhead is measured.
    import redis

    arrived = time.time()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.rpush(
        os.environ[HANDLER_KEY_ENV],
        *[json.dumps({"pk": record["dynamodb"]["Keys"]["pk"]["S"],
                      "written": float(record["dynamodb"]["NewImage"]["written_at"]["N"]), "arrived": arrived})
          for record in event["Records"]],
    )


def handler_noop(event, context):
    """Says when it was entered and left. perf_counter is CLOCK_MONOTONIC on Linux, one clock
    for the handler host and the benchmark process."""
    entered = time.perf_counter()
    return {"entered": entered, "left": time.perf_counter()}


def handler_fail(event, context):
    """Fails every batch, as a handler with a bug does (bench.alerts)."""
    raise RuntimeError("bench: this handler always fails")

"""`make bench`: ingestion throughput against a naive pipeline, write-to-database latency
through real Celery workers, feed and API query times on a million records, websocket fan-out
to 100 clients, and write-to-browser latency in Chromium. Prints the figures and merges them
into bench-results.json.

`python -m bench.run [ingest] [latency] [feed] [fanout] [browser]` runs the ones named; no
name runs them all, in that order.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import django
import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results.json"


def ensure_database() -> None:
    url = os.environ["DATABASE_URL"]
    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE streams_changerecord, streams_gap, streams_shard, streams_stream, streams_streamsource CASCADE"
        )


def bench_source(name: str):
    from streams.models import Stream, StreamSource

    source = StreamSource.objects.create(
        table_name=name, region="us-east-1", stream_arn=f"arn:bench:{name}", view_type="NEW_AND_OLD_IMAGES",
        key_schema=["pk"], status=StreamSource.Status.ACTIVE,
    )
    return source, Stream.objects.create(source=source, arn=source.stream_arn)


def fresh_shard(stream, owner: str):
    from streams.models import Shard

    return Shard.objects.create(stream=stream, shard_id=f"shardId-{uuid.uuid4().hex}", lease_owner=owner)


def _response_dict(body: bytes) -> dict:
    return {"status_code": 200, "headers": {}, "body": body}


def run_ours(bodies, stream) -> float:
    """Shardwatch's path: the streams client's raw-records hook, then records_save."""
    from streams.aws import _records_as_sent
    from streams.ingest import records_save

    owner = "bench"
    shard = fresh_shard(stream, owner)
    shard = type(shard).objects.select_related("stream__source").get(pk=shard.pk)
    count = 0
    started = time.perf_counter()
    for body in bodies:
        response: dict = {}
        _records_as_sent(response_dict=_response_dict(body), customized_response_dict=response)
        saved = records_save(shard=shard, owner=owner, records=response["Records"], finished=False)
        assert saved == len(response["Records"])
        count += saved
    return count / (time.perf_counter() - started)


def _plain(value):
    from boto3.dynamodb.types import Binary

    if isinstance(value, set):
        return sorted(_plain(member) for member in value)
    if isinstance(value, Binary):
        import base64

        return base64.b64encode(value.value).decode()
    return str(value)


def run_naive(bodies, stream) -> float:
    """What one would write first: boto3's own response parsing, its TypeDeserializer on
    every image, a top-level diff, and one ORM save (one transaction) per record."""
    import botocore.parsers
    import botocore.session
    from boto3.dynamodb.types import TypeDeserializer

    from streams.models import ChangeRecord, digest_item_key, sequence_key

    deserializer = TypeDeserializer()
    shard = fresh_shard(stream, "naive")

    def plain(image):
        if image is None:
            return None
        decoded = {name: deserializer.deserialize(value) for name, value in image.items()}
        return json.loads(json.dumps(decoded, default=_plain))

    output_shape = (
        botocore.session.get_session().get_service_model("dynamodbstreams").operation_model("GetRecords").output_shape
    )
    parser = botocore.parsers.create_parser("json")
    count = 0
    started = time.perf_counter()
    for body in bodies:
        response = parser.parse(_response_dict(body), output_shape)
        for record in response["Records"]:
            data = record["dynamodb"]
            keys, old, new = plain(data["Keys"]), plain(data.get("OldImage")), plain(data.get("NewImage"))
            changed = sorted(name for name in {*(old or {}), *(new or {})} if (old or {}).get(name) != (new or {}).get(name))
            item_key = json.dumps(keys, sort_keys=True)
            ChangeRecord.objects.create(
                source_id=stream.source_id, shard=shard, sequence_number=data["SequenceNumber"],
                sequence_key=sequence_key(data["SequenceNumber"]), event_id=record["eventID"],
                event_name=record["eventName"], approximate_creation_time=data["ApproximateCreationDateTime"],
                size_bytes=data["SizeBytes"], view_type=data["StreamViewType"], keys=keys, old_image=old,
                new_image=new, item_key=item_key, item_hash=digest_item_key(item_key),
                diff=[{"path": name} for name in changed],
            )
            count += 1
    return count / (time.perf_counter() - started)


def bench_ingest() -> dict:
    from bench import workload

    table = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    workload.create_table(table)
    print("writing the captured workload to DynamoDB Local ...", flush=True)
    writes = workload.write_orders(table=table, orders=2000)
    bodies = workload.capture_bodies(table=table)
    records = sum(len(json.loads(body)["Records"]) for body in bodies)
    assert records == writes, (records, writes)
    reset_tables()
    _, stream = bench_source(table)
    ours = [run_ours(bodies, stream) for _ in range(3)]
    # Two thousand records give the naive rate well enough; all of them would take minutes.
    naive = [run_naive(bodies[:2], stream)]
    result = {
        "ingest_records": records,
        "ingest_records_per_s": round(statistics.median(ours)),
        "naive_records_per_s": round(statistics.median(naive)),
    }
    result["ingest_speedup_vs_naive"] = round(result["ingest_records_per_s"] / result["naive_records_per_s"], 1)
    return result


def bench_write_to_db(*, writes: int = 500, rate_per_s: float = 20.0) -> dict:
    from streams.models import Shard
    from streams.sources import source_add
    from tests.processes import Processes

    from bench import workload

    reset_tables()
    table = f"bench-latency-{uuid.uuid4().hex[:8]}"
    workload.create_table(table)
    source = source_add(table_name=table, region="us-east-1")
    processes = Processes(DJANGO_SETTINGS_MODULE="bench.settings")
    processes.worker("bench", concurrency=2)
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
    import boto3
    from channels.layers import get_channel_layer

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


def feed_database_url(url: str) -> str:
    """The feed benchmark's own database, next to the bench database: the other benchmarks
    empty the tables, and the million seeded records are kept between runs."""
    base, name = url.rsplit("/", 1)
    return f"{base}/{name}_feed"


def bench_feed() -> dict:
    """bench.feed_queries in a process of its own, where Django is set up on the feed database."""
    out = ROOT / "test-artifacts" / "bench-feed.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "DATABASE_URL": feed_database_url(os.environ["DATABASE_URL"])}
    subprocess.run([sys.executable, "-m", "bench.feed_queries", str(out)], cwd=ROOT, env=env, check=True)
    return json.loads(out.read_text())


def bench_fanout() -> dict:
    from bench.fanout import bench_fanout

    return bench_fanout()


def bench_browser() -> dict:
    from bench.browser import bench_write_to_browser

    return bench_write_to_browser()


def bench_triggers() -> dict:
    from bench.triggers import bench_triggers

    return bench_triggers()


def bench_filters() -> dict:
    from bench.filters import bench_filters

    return bench_filters()


BENCHMARKS = {
    "ingest": bench_ingest,
    "latency": bench_write_to_db,
    "feed": bench_feed,
    "fanout": bench_fanout,
    "browser": bench_browser,
    "filters": bench_filters,
    "triggers": bench_triggers,
}
NEEDS_DYNAMODB = {"ingest", "latency", "fanout", "browser", "triggers"}


def merge_results(results: dict) -> None:
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged.update(results)
    RESULTS.write_text(json.dumps(merged, indent=2) + "\n")


def main() -> None:
    unknown = [name for name in sys.argv[1:] if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    selected = [name for name in BENCHMARKS if not sys.argv[1:] or name in sys.argv[1:]]
    ensure_database()
    django.setup()
    from django.core.management import call_command

    from streams import aws
    from tests import dynamodb_local

    call_command("migrate", verbosity=0)
    (ROOT / "var").mkdir(exist_ok=True)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    results = {}
    for name in selected:
        print(f"== {name}", flush=True)
        started, load_before = time.monotonic(), os.getloadavg()[0]
        # A DynamoDB Local of its own for each benchmark: one that has served the others is
        # slower (their tables and streams stay in it), and the figures would depend on order.
        ddb = None
        if name in NEEDS_DYNAMODB:
            port = dynamodb_local.free_port()
            ddb = dynamodb_local.start(port=port, log_path=ROOT / "test-artifacts" / f"bench-dynamodb-local-{name}.log")
            os.environ.update(dynamodb_local.environment(port))
            aws.forget_clients()  # clients made for an earlier instance point at its port
        try:
            figures = BENCHMARKS[name]()
        finally:
            if ddb is not None:
                dynamodb_local.stop(ddb)
        figures[f"{name}_bench_s"] = round(time.monotonic() - started, 1)
        # The machine's 1-minute load average before and after: on 2 cores, anything else
        # running (a test suite, a browser) shows in every figure above.
        figures[f"{name}_machine_load"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        print(json.dumps(figures, indent=2), flush=True)
        # Merged one by one, so a benchmark that fails keeps the figures of those before it.
        merge_results(figures)
        results.update(figures)
    headline = {name: value for name, value in results.items() if not isinstance(value, (dict, list))}
    print(json.dumps(headline, indent=2))
    print(f"written to {RESULTS.name}")


if __name__ == "__main__":
    main()

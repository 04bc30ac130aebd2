"""The long-running stream readers (streams/reader.py) at scale: what idle shards cost, how
soon a quiet table's write is read, how evenly thousands of shards are polled, and how fast
shards move to another reader. Real Celery worker, reader and beat processes as the Procfile
runs them (reader worker at --concurrency=2, logging at WARNING), on PostgreSQL and Redis,
reading DynamoDB Local or the fake Streams endpoint (tests/support/fake_streams_server.py, a
process of its own) where DynamoDB Local cannot play the part: it has one shard per table and
cannot count calls.

The floor, measured in this run:
- botocore_get_records_cpu_ms: CPU (time.process_time) of one empty GetRecords on a plain
  boto3 client against DynamoDB Local, over 1,000 calls. What polling an idle shard cannot
  cost less than.

500 idle tables on DynamoDB Local (one shard each, TRIM_HORIZON, no records), all held by the
reader worker's two readers and polled once a second, plus one table for the latency figures:
- reader_idle_cpu_ms_per_shard_s: CPU of every worker process (the reader worker and its pool,
  the other worker and its pool, beat; psutil) over ~30 s, per shard and second. Target: at
  most 2 x the floor; reader_idle_cpu_vs_floor is the ratio.
- db_writes_per_idle_shard_minute: rows inserted, updated and deleted in the streams_* tables
  (pg_stat_user_tables) per shard and minute, over 60 s, and the same by table. Ceiling:
  lease_renewals_per_shard_minute, 60 / (SHARDWATCH_LEASE_S / 3).
- idle_first_write_s_p50/_p95/_max: put_item on a table quiet for over a minute until its
  record's push from the reader's commit arrives on the source's Channels group (as
  bench.latency); 20 tables, one after another. Target p95 <= 1.5 s. DynamoDB Local answers
  the first GetRecords after a record lands in a shard that was empty with
  TrimmedDataAccessException (aws/aws-sdk-java#2923), which the reader retries after a backoff;
  AWS does not, so the same figure is taken on the fake endpoint too (_fake_endpoint).
- write_to_db_ms_p50/_p99_500_idle: bench.latency's measure on the one more table, 500 writes
  at 20 a second, while the 500 stay idle. Target p99 <= 350 ms. Its baseline,
  write_to_db_ms_p50/_p99_baseline, is the same measure in the same processes right after, with
  the 500 sources disabled (so the readers drop their shards).

The fake endpoint (it counts GetRecords and times them per shard):
- reader_idle_cpu_ms_per_shard_s_fake_endpoint and reader_idle_polls_per_shard_s: the same
  CPU figure with 500 idle shards of one stream, and how many GetRecords a shard got a second
  (the readers' idle cadence is 1); idle_first_write_s_*_fake_endpoint as above;
  write_to_db_ms_p50/_p99_500_idle_fake_endpoint: write-to-db on one DynamoDB Local table while
  the 500 idle shards are the fake's, whose GetRecords cost a tenth of a core where DynamoDB
  Local's cost these two cores much more (in production AWS serves them).
- reader_2000_shards_interval_s_p50/_p99/_max: 2,000 shards, one reader worker of
  concurrency 2: the time between consecutive GetRecords on each shard, as the server saw
  them, over ~30 s once every shard is held (the histogram is written to
  test-artifacts/readers-2000-shards-intervals.json). Target p99 <= 2 s.
  reader_2000_shards_rss_mb: the reader worker's resident memory (main process and pool);
  reader_2000_shards_cpu_ms_per_get_records: the reader worker's CPU per GetRecords, beside
  botocore_get_records_cpu_ms_fake_endpoint, the floor taken as above on the fake.
- failover_s / handoff_s: 500 shards, two reader workers of concurrency 1. kill -9 of one
  (its whole process group), or SIGTERM to one's main process (Celery's warm shutdown): the
  time from the signal until every shard is held by the other. Targets 30 s and 5 s. Records
  are written before, during and after; failover_lost/_duplicated and handoff_lost/_duplicated
  count what the database has against what was written. Target 0.

The machine is shared and has 2 cores: every figure moves with its load (readers_machine_load,
from bench.run), and the fake endpoint and DynamoDB Local run on the same cores as the readers.
"""

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import boto3
import psutil
import psycopg
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from bench import workload
from bench.common import ROOT, percentile, reset_tables
from bench.latency import _measure
from streams.models import ChangeRecord, Shard, StreamSource
from streams.sources import source_add, source_discover
from tests.support.processes import Processes

IDLE_TABLES = 500
FAKE_IDLE_SHARDS = 500
FAKE_MANY_SHARDS = 2000
FLOOR_CALLS = 1000
CPU_WINDOW_S = 30.0
DB_WINDOW_S = 60.0
INTERVAL_WINDOW_S = 30.0
FIRST_WRITES = 20
LATENCY_WRITES = 500
LATENCY_RATE_PER_S = 20.0
# As the Procfile runs them.
WORKER_CONCURRENCY = 4
READER_CONCURRENCY = 2
LOGLEVEL = "WARNING"


def bench_readers() -> dict:
    figures: dict = {}
    floor_ms = get_records_floor_ms(calls=FLOOR_CALLS)
    figures["botocore_get_records_cpu_ms"] = round(floor_ms, 3)
    figures.update(_dynamodb_local_idle(floor_ms=floor_ms))
    with FakeEndpoint(shards=FAKE_IDLE_SHARDS) as fake:
        figures.update(_fake_idle(fake, floor_ms=floor_ms))
        figures.update(_failover_and_handoff(fake))
    with FakeEndpoint(shards=FAKE_MANY_SHARDS) as fake:
        figures.update(_fake_many(fake))
    return figures


# The floor ---------------------------------------------------------------------------------


def get_records_floor_ms(*, calls: int) -> float:
    """CPU milliseconds of one GetRecords on an empty shard of DynamoDB Local, with a plain
    boto3 client (no Shardwatch hooks), averaged over `calls` calls after a warm-up."""
    table = f"bench-floor-{uuid.uuid4().hex[:8]}"
    dynamodb = boto3.client("dynamodb")
    workload.create_table(table, client=dynamodb)
    streams = boto3.client("dynamodbstreams")
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard_id = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    for _ in range(50):
        iterator = streams.get_records(ShardIterator=iterator)["NextShardIterator"]
    started = time.process_time()
    for _ in range(calls):
        iterator = streams.get_records(ShardIterator=iterator)["NextShardIterator"]
    return (time.process_time() - started) * 1000 / calls


# 500 idle tables on DynamoDB Local ---------------------------------------------------------


def _dynamodb_local_idle(*, floor_ms: float) -> dict:
    reset_tables()
    run = uuid.uuid4().hex[:6]
    tables = [f"bench-idle-{run}-{number:04d}" for number in range(IDLE_TABLES)]
    latency_table = f"bench-idle-{run}-latency"
    started = time.monotonic()
    dynamodb = boto3.client("dynamodb")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda name: workload.create_table(name, client=dynamodb), [*tables, latency_table]))
    sources = [source_add(table_name=name, region="us-east-1") for name in tables]
    latency_source = source_add(table_name=latency_table, region="us-east-1")
    for source in [*sources, latency_source]:
        source_discover(source_id=source.pk)
    setup_s = time.monotonic() - started

    processes = Processes(DJANGO_SETTINGS_MODULE="bench.settings")
    started_processes = _start_procfile_processes(processes, "readers-ddb")
    try:
        held_s = readers_wait_held(shards=IDLE_TABLES + 1, readers=READER_CONCURRENCY, timeout_s=120)
        # The tables have had no write since they were made; the DB window below makes that a
        # minute at least before the first writes are timed.
        writes_before, cpu_before = streams_table_writes(), processes_cpu_s(started_processes)
        window_started = time.monotonic()
        time.sleep(CPU_WINDOW_S)
        cpu_after, cpu_window_s = processes_cpu_s(started_processes), time.monotonic() - window_started
        time.sleep(max(0.0, DB_WINDOW_S - (time.monotonic() - window_started)))
        writes_after, db_window_s = streams_table_writes(), time.monotonic() - window_started
        # Since the sources were set up: the tables were made before that, and never written.
        quiet_s = time.monotonic() - (started + setup_s)
        first_writes_s = asyncio.run(_first_writes(samples=[
            (source.group_name, lambda table=source.table_name, key=f"first-{number:03d}": _put(dynamodb, table, key))
            for number, source in enumerate(_spread(sources, FIRST_WRITES))
        ]))

        # As bench.latency: the first write after quiet on its own, then 500 at the working cadence.
        [cold_ms] = _write_to_db_ms(latency_source, 1, "cold")
        _write_to_db_ms(latency_source, 10, "warm")
        latencies = _write_to_db_ms(latency_source, LATENCY_WRITES, "lat")
        # The baseline, in the same run and processes: the 500 sources disabled, so that the
        # readers drop their shards at their next renewal and poll the latency table's alone.
        StreamSource.objects.filter(pk__in=[source.pk for source in sources]).update(enabled=False)
        _wait_until(lambda: sum(leases_held().values()) == 1, timeout_s=30, what="the readers to drop the disabled shards")
        _write_to_db_ms(latency_source, 10, "warm-base")
        baseline = _write_to_db_ms(latency_source, LATENCY_WRITES, "base")
    finally:
        processes.stop_all()

    shards = IDLE_TABLES + 1
    cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    cpu_ms_per_shard_s = sum(cpu.values()) * 1000 / (shards * cpu_window_s)
    writes = {name: writes_after.get(name, 0) - writes_before.get(name, 0) for name in writes_after}
    writes = {name: n for name, n in writes.items() if n}
    return {
        "readers_idle_setup_s": round(setup_s, 1),
        "readers_idle_held_after_s": round(held_s, 1),
        "reader_idle_shards": shards,
        "reader_idle_cpu_ms_per_shard_s": round(cpu_ms_per_shard_s, 3),
        "reader_idle_cpu_vs_floor": round(cpu_ms_per_shard_s / floor_ms, 2),
        "reader_idle_cpu_cores_by_process": {name: round(s / cpu_window_s, 3) for name, s in cpu.items()},
        "db_writes_per_idle_shard_minute": round(sum(writes.values()) / shards / (db_window_s / 60), 2),
        "db_writes_per_idle_shard_minute_by_table": {
            name: round(n / shards / (db_window_s / 60), 2) for name, n in writes.items()
        },
        "lease_renewals_per_shard_minute": round(60 / (settings.SHARDWATCH_LEASE_S / 3), 2),
        "idle_first_write_quiet_s": round(quiet_s),
        "idle_first_write_s_p50": round(percentile(first_writes_s, 0.50), 2),
        "idle_first_write_s_p95": round(percentile(first_writes_s, 0.95), 2),
        "idle_first_write_s_max": round(max(first_writes_s), 2),
        "idle_first_write_s_all": [round(s, 2) for s in first_writes_s],
        "write_to_db_ms_first_after_idle_500_idle": round(cold_ms, 1),
        "write_to_db_ms_p50_500_idle": round(percentile(latencies, 0.50), 1),
        "write_to_db_ms_p99_500_idle": round(percentile(latencies, 0.99), 1),
        "write_to_db_ms_p50_baseline": round(percentile(baseline, 0.50), 1),
        "write_to_db_ms_p99_baseline": round(percentile(baseline, 0.99), 1),
    }


def _put(client, table: str, key: str) -> str:
    client.put_item(TableName=table, Item={"pk": {"S": key}})
    return key


def _spread(items: list, count: int) -> list:
    """`count` of `items`, evenly spaced over the list (and so over the readers holding them)."""
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


async def _first_writes(*, samples: list[tuple[str, Callable[[], str]]]) -> list[float]:
    """For each (Channels group, write) in turn, a second or so apart: call `write` (it writes
    one record and returns its partition key) and time it until the push of that record
    arrives on the group (sent on the reader's commit). Seconds, in write order."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    groups = sorted({group for group, _ in samples})
    for group in groups:
        await layer.group_add(group, channel)
    loop = asyncio.get_running_loop()
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def writer():
        for _, write in samples:
            at = time.time()
            key = await loop.run_in_executor(None, write)
            sent[f"pk={key}"] = at
            # Not in step with the readers' one-second cadence, so the samples land anywhere in it.
            await asyncio.sleep(random.uniform(0.7, 1.3))

    async def receiver():
        while len(sent) < len(samples) or not set(sent) <= set(arrived):
            message = await asyncio.wait_for(layer.receive(channel), 60)
            now = time.time()
            for row in message["records"]:
                arrived.setdefault(row["key"], now)

    await asyncio.gather(writer(), receiver())
    for group in groups:
        await layer.group_discard(group, channel)
    return [arrived[key] - at for key, at in sent.items()]


def _write_to_db_ms(source, writes: int, prefix: str) -> list[float]:
    """bench.latency's write-to-db measure on `source`'s table, at LATENCY_RATE_PER_S."""
    return asyncio.run(_measure(
        source=source, table=source.table_name, writes=writes, rate_per_s=LATENCY_RATE_PER_S, prefix=prefix
    ))


def _wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.2) -> float:
    """Poll `condition` until it is true; returns the seconds it took. Raises after `timeout_s`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"waited {timeout_s} s for {what}; see test-artifacts/")
        time.sleep(every_s)
    return time.monotonic() - started


# Processes and what they cost --------------------------------------------------------------


def _start_procfile_processes(processes: Processes, prefix: str, *, readers: int = 1, reader_concurrency: int = READER_CONCURRENCY, worker_concurrency: int = WORKER_CONCURRENCY) -> dict[str, subprocess.Popen]:
    started = {"worker": processes.worker(f"{prefix}-worker", concurrency=worker_concurrency, loglevel=LOGLEVEL)}
    for number in range(readers):
        name = "reader" if readers == 1 else f"reader-{number + 1}"
        started[name] = processes.reader(f"{prefix}-{name}", concurrency=reader_concurrency, loglevel=LOGLEVEL)
    started["beat"] = processes.beat(
        ROOT / "var" / f"bench-{prefix}-beat-{os.getpid()}", name=f"{prefix}-beat", loglevel=LOGLEVEL
    )
    return started


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and every process under it (a Celery worker and its pool)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def processes_cpu_s(started: dict[str, subprocess.Popen]) -> dict[str, float]:
    """User + system CPU seconds of each named process with its children, so far."""
    cpu = {}
    for name, process in started.items():
        total = 0.0
        for member in process_tree(process.pid):
            try:
                times = member.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        cpu[name] = total
    return cpu


def processes_rss_mb(process: subprocess.Popen) -> float:
    total = 0
    for member in process_tree(process.pid):
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def streams_table_writes() -> dict[str, int]:
    """Rows inserted + updated + deleted so far in each streams_* table of the bench database,
    from a connection of its own, after dropping any cached statistics snapshot."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname LIKE 'streams\\_%'"
        ).fetchall()
    return {name: int(n) for name, n in rows}


def leases_held() -> Counter:
    """How many shards each reader (owner token) holds under an unexpired lease."""
    return Counter(
        dict(
            Shard.objects.filter(lease_expires_at__gte=timezone.now()).exclude(lease_owner="")
            .values_list("lease_owner").annotate(n=Count("pk")).order_by()
        )
    )


def readers_wait_held(*, shards: int, readers: int, timeout_s: float) -> float:
    """Wait until `readers` readers hold all `shards` shards between them, evenly (within
    one), then for one renewal more, so that a reader that lost shards to balancing has
    dropped them (it learns it at its next renewal, every lease/3). Returns the seconds it took."""
    started = time.monotonic()
    while True:
        held = leases_held()
        if (
            sum(held.values()) == shards
            and len(held) == readers
            and max(held.values()) - min(held.values()) <= 1
        ):
            break
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"readers held {dict(held)} of {shards} shards after {timeout_s} s; see test-artifacts/")
        time.sleep(0.5)
    time.sleep(settings.SHARDWATCH_LEASE_S / 3 + 1)
    return time.monotonic() - started


# The fake endpoint -------------------------------------------------------------------------


class FakeEndpoint:
    """tests/support/fake_streams_server.py as a process of its own, with `shards` open shards
    of one stream (table "fake"), throttling at AWS's five GetRecords a second a shard."""

    def __init__(self, *, shards: int):
        self.shards = shards
        self.process: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> "FakeEndpoint":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_streams_server", "--shards", str(self.shards)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            raise RuntimeError("the fake Streams endpoint did not start")
        # Stream discovery also asks Lambda for event source mappings; the fake refuses the call
        # at once, where AWS would be dialled (and not reached) from here.
        self._lambda_before = os.environ.get("AWS_ENDPOINT_URL_LAMBDA")
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = self.url
        return self

    def __exit__(self, *exc_info) -> None:
        if self._lambda_before is None:
            os.environ.pop("AWS_ENDPOINT_URL_LAMBDA", None)
        else:
            os.environ["AWS_ENDPOINT_URL_LAMBDA"] = self._lambda_before
        self.process.terminate()
        self.process.wait(10)

    def control(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url + path, data=data), timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self.control("/_fake/stats")

    def record_write(self, shard_id: str) -> str:
        """Write one record to `shard_id`; returns its key as stored ("pk=item-<n>")."""
        written = self.control("/_fake/records", {"shard_id": shard_id, "count": 1})
        return f"item-{int(written['last_sequence_number'])}"

    def source_add(self):
        reset_tables()
        source = source_add(table_name="fake", region="us-east-1", endpoint_url=self.url)
        source_discover(source_id=source.pk)
        return source


def _fake_idle(fake: FakeEndpoint, *, floor_ms: float) -> dict:
    source = fake.source_add()
    # One table on DynamoDB Local for write-to-db while the 500 idle shards are the fake's: as
    # in production, the idle shards' GetRecords are served elsewhere (by the fake, at a tenth
    # of a core), not by DynamoDB Local on these two cores.
    latency_table = f"bench-fake-idle-latency-{uuid.uuid4().hex[:6]}"
    workload.create_table(latency_table)
    latency_source = source_add(table_name=latency_table, region="us-east-1")
    source_discover(source_id=latency_source.pk)
    processes = Processes(DJANGO_SETTINGS_MODULE="bench.settings")
    started = _start_procfile_processes(processes, "readers-fake-idle")
    try:
        readers_wait_held(shards=fake.shards + 1, readers=READER_CONCURRENCY, timeout_s=90)
        stats_before, cpu_before, window_started = fake.stats(), processes_cpu_s(started), time.monotonic()
        time.sleep(CPU_WINDOW_S)
        stats_after, cpu_after, window_s = fake.stats(), processes_cpu_s(started), time.monotonic() - window_started
        shard_ids = list(Shard.objects.filter(stream__source=source).order_by("shard_id").values_list("shard_id", flat=True))
        first_writes_s = asyncio.run(_first_writes(samples=[
            (source.group_name, lambda shard_id=shard_id: fake.record_write(shard_id))
            for shard_id in _spread(shard_ids, FIRST_WRITES)
        ]))

        _write_to_db_ms(latency_source, 10, "warm")
        latencies = _write_to_db_ms(latency_source, LATENCY_WRITES, "lat")
    finally:
        processes.stop_all()
    cpu_s = sum(cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after)
    polls = stats_after["requests"].get("GetRecords", 0) - stats_before["requests"].get("GetRecords", 0)
    server_cpu_s = stats_after["process_time_s"] - stats_before["process_time_s"]
    return {
        "reader_idle_cpu_ms_per_shard_s_fake_endpoint": round(cpu_s * 1000 / (fake.shards * window_s), 3),
        "reader_idle_cpu_ms_per_get_records_fake_endpoint": round(cpu_s * 1000 / polls, 3) if polls else None,
        "reader_idle_polls_per_shard_s": round(polls / (fake.shards * window_s), 3),
        "fake_endpoint_cpu_cores_500_idle": round(server_cpu_s / window_s, 3),
        "idle_first_write_s_p50_fake_endpoint": round(percentile(first_writes_s, 0.50), 2),
        "idle_first_write_s_p95_fake_endpoint": round(percentile(first_writes_s, 0.95), 2),
        "idle_first_write_s_max_fake_endpoint": round(max(first_writes_s), 2),
        "write_to_db_ms_p50_500_idle_fake_endpoint": round(percentile(latencies, 0.50), 1),
        "write_to_db_ms_p99_500_idle_fake_endpoint": round(percentile(latencies, 0.99), 1),
    }


def _fake_many(fake: FakeEndpoint) -> dict:
    source = fake.source_add()
    floor_ms = _fake_get_records_floor_ms(fake, shard_id=Shard.objects.filter(stream__source=source).first().shard_id)
    processes = Processes(DJANGO_SETTINGS_MODULE="bench.settings")
    started = _start_procfile_processes(processes, "readers-2000")
    try:
        held_s = readers_wait_held(shards=fake.shards, readers=READER_CONCURRENCY, timeout_s=150)
        fake.control("/_fake/intervals/reset", {})
        stats_before, cpu_before, window_started = fake.stats(), processes_cpu_s(started), time.monotonic()
        time.sleep(INTERVAL_WINDOW_S)
        stats_after, cpu_after, window_s = fake.stats(), processes_cpu_s(started), time.monotonic() - window_started
        rss_mb = processes_rss_mb(started["reader"])
        held_at_end = sum(leases_held().values())
    finally:
        processes.stop_all()
    intervals = stats_after["get_records_intervals"]
    # The whole histogram, for looking at where the tail comes from.
    (ROOT / "test-artifacts" / "readers-2000-shards-intervals.json").write_text(json.dumps(intervals, indent=1))
    polls = stats_after["requests"].get("GetRecords", 0) - stats_before["requests"].get("GetRecords", 0)
    return {
        "botocore_get_records_cpu_ms_fake_endpoint": round(floor_ms, 3),
        "reader_2000_shards_held_after_s": round(held_s, 1),
        "reader_2000_shards_interval_s_p50": intervals["p50_s"],
        "reader_2000_shards_interval_s_p99": intervals["p99_s"],
        "reader_2000_shards_interval_s_max": intervals["max_s"],
        "reader_2000_shards_stalest_s": intervals["stalest_s"],
        "reader_2000_shards_held_at_end": held_at_end,
        "reader_2000_shards_polls_per_shard_s": round(polls / (fake.shards * window_s), 3),
        "reader_2000_shards_throttled": stats_after["throttled"] - stats_before["throttled"],
        "reader_2000_shards_rss_mb": round(rss_mb, 1),
        "reader_2000_shards_cpu_ms_per_get_records": round(
            (cpu_after["reader"] - cpu_before.get("reader", 0.0)) * 1000 / polls, 3
        ) if polls else None,
        # The intervals follow from this: polls a second = cores / CPU per GetRecords.
        "reader_2000_shards_reader_cpu_cores": round((cpu_after["reader"] - cpu_before.get("reader", 0.0)) / window_s, 3),
        "reader_2000_shards_cpu_cores_by_process": {
            name: round((cpu_after[name] - cpu_before.get(name, 0.0)) / window_s, 3) for name in cpu_after
        },
        "fake_endpoint_cpu_cores_2000": round((stats_after["process_time_s"] - stats_before["process_time_s"]) / window_s, 3),
    }


def _fake_get_records_floor_ms(fake: FakeEndpoint, *, shard_id: str, calls: int = FLOOR_CALLS) -> float:
    """As get_records_floor_ms, on the fake endpoint: what the 2,000 shards' CPU per GetRecords
    compares with. The fake's throttling is off meanwhile (one shard is called back to back)."""
    fake.control("/_fake/config", {"throttle_per_shard_s": 0})
    try:
        streams = boto3.client("dynamodbstreams", endpoint_url=fake.url, region_name="us-east-1")
        iterator = streams.get_shard_iterator(
            StreamArn=Shard.objects.get(shard_id=shard_id).stream.arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(50):
            iterator = streams.get_records(ShardIterator=iterator)["NextShardIterator"]
        started = time.process_time()
        for _ in range(calls):
            iterator = streams.get_records(ShardIterator=iterator)["NextShardIterator"]
        return (time.process_time() - started) * 1000 / calls
    finally:
        fake.control("/_fake/config", {"throttle_per_shard_s": 5})


# Failover and handoff ----------------------------------------------------------------------


def _owner_pid(owner: str) -> int:
    # A reader's owner token is "<host>:<pid>/<random>" (streams.reader.Reader).
    return int(owner.split("/", 1)[0].rsplit(":", 1)[1])


def _all_held_by(process: subprocess.Popen, *, shards: int) -> bool:
    pids = {member.pid for member in process_tree(process.pid)}
    held = leases_held()
    return sum(held.values()) == shards and all(_owner_pid(owner) in pids for owner in held)


class _Writes:
    """Records written to random shards of the fake: a burst now, or a trickle in a thread."""

    def __init__(self, fake: FakeEndpoint, shard_ids: list[str]):
        self.fake = fake
        self.shard_ids = shard_ids
        self.keys: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def burst(self, count: int) -> None:
        for shard_id in random.sample(self.shard_ids, count):
            self.keys.append(self.fake.record_write(shard_id))

    def trickle(self, *, every_s: float) -> None:
        def run():
            while not self._stop.wait(every_s):
                self.keys.append(self.fake.record_write(random.choice(self.shard_ids)))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def trickle_stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _count_against_written(*, source, written: list[str], timeout_s: float) -> tuple[int, int]:
    """Wait until every written key is in the database (or `timeout_s`), then count the
    written keys missing and the rows beyond one a key. Returns (lost, duplicated)."""
    wanted = Counter(written)

    def stored() -> Counter:
        keys = ChangeRecord.objects.filter(source=source).values_list("keys", flat=True)
        return Counter(key["pk"]["S"] for key in keys if key["pk"]["S"] in wanted)

    deadline = time.monotonic() + timeout_s
    while sum((wanted - stored()).values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)  # anything read twice would arrive now
    have = stored()
    lost = sum((wanted - have).values())
    duplicated = sum((have - wanted).values())
    return lost, duplicated


def _failover_and_handoff(fake: FakeEndpoint) -> dict:
    """Two reader workers of concurrency 1 share the shards. One is killed (-9, its process
    group); once the other holds everything a third joins, and one of the two is stopped with
    SIGTERM. Each time: seconds from the signal until the other holds every shard."""
    source = fake.source_add()
    shard_ids = list(Shard.objects.filter(stream__source=source).values_list("shard_id", flat=True))
    processes = Processes(DJANGO_SETTINGS_MODULE="bench.settings")
    started = _start_procfile_processes(processes, "readers-failover", readers=2, reader_concurrency=1, worker_concurrency=1)
    figures = {}
    try:
        readers_wait_held(shards=fake.shards, readers=2, timeout_s=90)

        # kill -9: the survivor takes the shards once their leases expire.
        writes = _Writes(fake, shard_ids)
        writes.burst(50)
        writes.trickle(every_s=0.2)
        victim, survivor = started["reader-1"], started["reader-2"]
        processes.kill_hard(victim)
        figures["failover_s"] = round(_wait_until(
            lambda: _all_held_by(survivor, shards=fake.shards), timeout_s=90, what="the surviving reader to take every shard"
        ), 1)
        time.sleep(2)
        writes.trickle_stop()
        writes.burst(50)
        figures["failover_lost"], figures["failover_duplicated"] = _count_against_written(
            source=source, written=writes.keys, timeout_s=60
        )
        figures["failover_records_written"] = len(writes.keys)

        # SIGTERM: a warm shutdown, the reader releases its leases and the other takes them.
        joined = processes.reader("readers-failover-reader-3", concurrency=1, loglevel=LOGLEVEL)
        readers_wait_held(shards=fake.shards, readers=2, timeout_s=90)
        writes = _Writes(fake, shard_ids)
        writes.burst(50)
        writes.trickle(every_s=0.2)
        os.kill(joined.pid, signal.SIGTERM)
        figures["handoff_s"] = round(_wait_until(
            lambda: _all_held_by(survivor, shards=fake.shards), timeout_s=60, what="the staying reader to take every shard",
            every_s=0.1,
        ), 1)
        time.sleep(2)
        writes.trickle_stop()
        writes.burst(50)
        figures["handoff_lost"], figures["handoff_duplicated"] = _count_against_written(
            source=source, written=writes.keys, timeout_s=60
        )
        figures["handoff_records_written"] = len(writes.keys)
    finally:
        processes.stop_all()
    return figures

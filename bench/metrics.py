"""The /metrics scrape benchmark.

metrics_scrape_ms_p95 (and _p50): GET /metrics through Django's whole request stack (the test
client, with the bearer token), on a database holding one source of 1,000 shards (iterator
ages set, leases held by 4 readers) and 100 triggers on it, each with a cursor per shard
(100,000 TriggerCursor rows, a tenth of them behind), and the counters and histograms such a
system counts (about 3,000 stored series). Target: <= 100 ms.

metrics_scrape_baseline_ms_p95: a `SELECT 1` round trip to the same database in the same run,
so a slow machine shows as a slow baseline, not as a slow scrape.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from bench.common import percentile, reset_tables
from meters.heartbeats import heartbeat_beat
from meters.models import Heartbeat, Meter, MeterMinute
from meters.store import meter_count, meter_observe, meters_flush
from streams.models import Shard, Stream, StreamSource
from workers.models import Trigger, TriggerCursor

SHARDS = 1000
TRIGGERS = 100
READERS = 4
SCRAPES = 60
WARM_UP = 5
TOKEN = "bench-metrics-token"


def _seed() -> None:
    reset_tables()
    Meter.objects.all().delete()
    MeterMinute.objects.all().delete()
    Heartbeat.objects.all().delete()
    now = timezone.now()
    source = StreamSource.objects.create(
        table_name="bench-wide", region="us-east-1", status=StreamSource.Status.ACTIVE,
        stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/bench-wide/stream/2026-01-01T00:00:00.000",
    )
    stream = Stream.objects.create(source=source, arn=source.stream_arn)
    Shard.objects.bulk_create([
        Shard(
            stream=stream, shard_id=f"shardId-{i:08d}", iterator_age_s=float(i % 50), iterator_age_at=now,
            lease_owner=f"reader-{i % READERS}", lease_expires_at=now + timedelta(minutes=10),
            last_polled_by=f"ip-10-0-0-{i % READERS}:{1000 + i % READERS}", last_polled_at=now,
        )
        for i in range(SHARDS)
    ], batch_size=1000)
    shard_ids = list(Shard.objects.filter(stream=stream).values_list("pk", flat=True))
    triggers = Trigger.objects.bulk_create([
        Trigger(name=f"bench-trigger-{i:03d}", source=source, target=Trigger.Target.PYTHON, handler="bench.handlers.noop")
        for i in range(TRIGGERS)
    ])
    for trigger in triggers:
        TriggerCursor.objects.bulk_create([
            TriggerCursor(trigger=trigger, shard_id=shard_id,
                          pending_since=now - timedelta(seconds=n % 300) if n % 10 == 0 else None)
            for n, shard_id in enumerate(shard_ids)
        ], batch_size=5000)
    for error in ("ThrottlingException", "TrimmedDataAccessException", "EndpointConnectionError"):
        meter_count(name="shardwatch_poll_errors_total", labels={"source": source.pk, "error": error})
    meter_count(name="shardwatch_records_read_total", labels={"source": source.pk}, value=10**6)
    meter_count(name="shardwatch_polls_total", labels={"source": source.pk}, value=10**7)
    meter_observe(name="shardwatch_ingest_latency_seconds", labels={"source": source.pk}, value=0.03)
    meter_observe(name="shardwatch_push_latency_seconds", labels={"source": source.pk}, value=0.002)
    for trigger in triggers:
        labels = {"trigger": trigger.pk}
        for outcome in ("success", "function_error", "timeout"):
            meter_count(name="shardwatch_trigger_invocations_total", labels={**labels, "outcome": outcome}, value=7)
        for name in ("records_sent", "records_filtered", "retries", "bisects", "dead_letters"):
            meter_count(name=f"shardwatch_trigger_{name}_total", labels=labels, value=3)
        for seconds in (0.004, 0.2, 3.0):
            meter_observe(name="shardwatch_trigger_batch_duration_seconds", labels=labels, value=seconds)
    meters_flush()
    for i in range(READERS + 1):
        heartbeat_beat(process=f"celery@bench-{i}:{1000 + i}", role=Heartbeat.Role.WORKER)
    heartbeat_beat(process="beat@bench:999", role=Heartbeat.Role.BEAT)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _timed_ms(call, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def bench_metrics_scrape() -> dict:
    _seed()
    settings.METRICS_TOKEN = TOKEN
    client = Client(HTTP_HOST="localhost", headers={"Authorization": f"Bearer {TOKEN}"})

    def scrape():
        response = client.get("/metrics")
        assert response.status_code == 200, response.status_code
        return response

    body = scrape().content
    _timed_ms(scrape, WARM_UP)
    scrapes = _timed_ms(scrape, SCRAPES)

    def select_one():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    baseline = _timed_ms(select_one, SCRAPES)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return {
        "metrics_scrape_ms_p95": round(percentile(scrapes, 0.95), 1),
        "metrics_scrape_ms_p50": round(percentile(scrapes, 0.5), 1),
        "metrics_scrape_baseline_ms_p95": round(percentile(baseline, 0.95), 2),
        "metrics_scrape_series": series,
        "metrics_scrape_bytes": len(body),
        "metrics_scrape_count": SCRAPES,
        "metrics_scrape_shards": SHARDS,
        "metrics_scrape_trigger_cursors": TriggerCursor.objects.count(),
        "metrics_scrape_target_ms": 100,
    }

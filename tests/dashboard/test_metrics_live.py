"""/metrics from a running system: DynamoDB Local, real Celery worker, reader and beat
processes over Redis and PostgreSQL, a trigger, and a scrape over HTTP that Prometheus' own
checker (`promtool check metrics`) must accept, with figures that match what was written."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meters.models import MeterMinute
from streams.sources import source_add
from tests.support.processes import Processes, wait_for
from tests.support.promtool import promtool_check_metrics
from workers.models import Invocation, Trigger

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "live-metrics-token"
WRITES = 12


@pytest.fixture
def processes():
    started = Processes(
        SHARDWATCH_DISCOVERY_INTERVAL_S="2",
        SHARDWATCH_DISPATCH_INTERVAL_S="1",
        SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S="1",
        SHARDWATCH_GAUGES_SAMPLE_S="2",
    )
    yield started
    started.stop_all()


def scrape(url: str) -> bytes:
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read()


def values(text: bytes, name: str) -> dict[frozenset, float]:
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == name
    }


def test_it_serves_metrics_that_promtool_accepts_with_the_figures_of_a_running_system(
    processes, live_server, settings, make_table, dynamodb, tmp_path
):
    settings.METRICS_TOKEN = TOKEN
    table = make_table(range_key=False, prefix="metrics")
    source = source_add(table_name=table, region="us-east-1")
    trigger = Trigger.objects.create(
        name="live-records", source=source, target=Trigger.Target.PYTHON,
        handler="tests.handlers.triggers.record_batches", batch_size=5,
    )
    processes.worker("worker")
    processes.reader("reader")
    processes.beat(tmp_path / "beat-schedule")
    for number in range(WRITES):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"order-{number:03d}"}})

    where = frozenset({"source": str(source.pk), "table": table, "region": "us-east-1"}.items())
    named = frozenset({"trigger": str(trigger.pk), "trigger_name": "live-records"}.items())

    scraped = {}

    def all_counted():
        text = scraped["text"] = scrape(live_server.url)
        # Workers add up their counts every second (SHARDWATCH_METERS_FLUSH_S in Processes).
        sent = values(text, "shardwatch_trigger_records_sent_total").get(named)
        return sent == WRITES and values(text, "shardwatch_records_read_total").get(where) == WRITES

    assert wait_for(all_counted, timeout=90), scraped["text"].decode()
    text = scraped["text"]

    result = promtool_check_metrics(text)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert sum(invocation.record_count for invocation in Invocation.objects.filter(trigger=trigger)) == WRITES
    assert values(text, "shardwatch_polls_total")[where] >= 1
    assert values(text, "shardwatch_ingest_latency_seconds_count")[where] >= 1
    assert values(text, "shardwatch_trigger_invocations_total")[named | {("outcome", "success")}] >= 1
    assert values(text, "shardwatch_source_record_times_rounded")[where] == 1  # DynamoDB Local
    assert values(text, "shardwatch_iterator_age_seconds")[where] < 30
    assert values(text, "shardwatch_trigger_iterator_age_seconds")[named] == 0
    assert values(text, "shardwatch_source_up")[where] == 1
    assert sum(values(text, "shardwatch_leases_held").values()) == 1  # DynamoDB Local: one shard
    assert values(text, "shardwatch_processes_alive")[frozenset({("role", "worker")})] >= 1
    assert b"order-0" not in text  # no item data
    # Beat samples the charted gauges (every 2 s here) for the charts.
    assert wait_for(lambda: MeterMinute.objects.filter(name="shardwatch_iterator_age_seconds").exists(), timeout=30)

"""GET /metrics (dashboard.metrics): who may read it, what it holds, and that Prometheus'
own checker accepts it. The end to end run with real workers is in test_metrics_live.py."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from meters.heartbeats import heartbeat_beat
from meters.models import Heartbeat
from meters.store import meter_count, meter_observe, meters_flush
from streams.models import ChangeRecord, Shard, Stream, StreamSource, sequence_key
from tests.support.promtool import promtool_check_metrics
from workers.models import Outcome, Trigger, TriggerCursor

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def system():
    """A source of 5 shards (one far behind, one leased by a reader), a trigger with a cursor
    per shard, and counted meters, as if workers had run."""
    now = timezone.now()
    source = StreamSource.objects.create(
        table_name="orders", region="eu-west-1", status=StreamSource.Status.ACTIVE,
        stream_arn="arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/1",
    )
    stream = Stream.objects.create(source=source, arn=source.stream_arn)
    shards = Shard.objects.bulk_create([
        Shard(stream=stream, shard_id=f"shardId-{i:05d}", iterator_age_s=i * 10.0, iterator_age_at=now,
              discovered_at=now - timedelta(hours=1))
        for i in range(5)
    ])
    Shard.objects.filter(pk=shards[0].pk).update(
        lease_owner="reader-token", lease_expires_at=now + timedelta(seconds=30), last_polled_by="ip-10-0-0-1:42"
    )
    trigger = Trigger.objects.create(name="notify", source=source, target=Trigger.Target.PYTHON, handler="x.y")
    TriggerCursor.objects.bulk_create([
        TriggerCursor(trigger=trigger, shard=shard, pending_since=now - timedelta(seconds=90) if i == 2 else None)
        for i, shard in enumerate(shards)
    ])
    meter_count(name="shardwatch_records_read_total", labels={"source": source.pk}, value=42)
    meter_count(name="shardwatch_poll_errors_total", labels={"source": source.pk, "error": "ThrottlingException"})
    meter_observe(name="shardwatch_ingest_latency_seconds", labels={"source": source.pk}, value=0.02)
    meter_count(name="shardwatch_trigger_invocations_total", labels={"trigger": trigger.pk, "outcome": "success"}, value=3)
    meters_flush()
    heartbeat_beat(process="worker@host:1", role=Heartbeat.Role.WORKER)
    return source, trigger


def test_it_answers_401_with_a_bearer_challenge_without_a_token_or_login(client, token):
    response = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})

    assert response.status_code == 401 and wrong.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_takes_no_token_at_all_when_none_is_configured(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_it_answers_the_bearer_token_and_a_logged_in_user(client, owner, token):
    from django.test import Client

    with_token = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    logged_in = owner.get("/metrics")

    assert with_token.status_code == 200 and logged_in.status_code == 200
    assert with_token["Content-Type"].startswith("text/plain; version=0.0.4")


def test_it_refuses_a_login_with_no_role_unless_it_sends_the_token(outsider, viewer, token):
    refused = outsider.get("/metrics")
    with_token = outsider.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert refused.status_code == 403 and b"shardwatch_" not in refused.content
    assert with_token.status_code == 200 and viewer.get("/metrics").status_code == 200


def samples(text: str) -> dict:
    """{(sample name, frozenset of (label, value))): value} as Prometheus' parser reads `text`."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_it_exports_counters_histograms_and_gauges_with_names_beside_ids(owner, system):
    source, trigger = system

    found = samples(owner.get("/metrics").content.decode())

    def value(name, **labels):
        return found.get((name, frozenset({key: str(v) for key, v in labels.items()}.items())))

    where = {"source": source.pk, "table": "orders", "region": "eu-west-1"}
    named = {"trigger": trigger.pk, "trigger_name": "notify"}
    assert value("shardwatch_records_read_total", **where) == 42
    assert value("shardwatch_poll_errors_total", **where, error="ThrottlingException") == 1
    assert value("shardwatch_ingest_latency_seconds_bucket", **where, le="0.01") == 0
    assert value("shardwatch_ingest_latency_seconds_bucket", **where, le="0.025") == 1
    assert value("shardwatch_ingest_latency_seconds_bucket", **where, le="+Inf") == 1
    assert value("shardwatch_ingest_latency_seconds_count", **where) == 1
    assert value("shardwatch_trigger_invocations_total", **named, outcome="success") == 3
    assert 40 <= value("shardwatch_iterator_age_seconds", **where) < 42  # shard 4: 40 s when polled just now
    shard_ages = {dict(labels)["shard"] for name, labels in found if name == "shardwatch_shard_iterator_age_seconds"}
    assert shard_ages == {"shardId-00004", "shardId-00003", "shardId-00002"}  # the worst 3 of 5 only
    assert value("shardwatch_source_record_times_rounded", **where) == 0
    assert value("shardwatch_source_up", **where) == 1
    assert value("shardwatch_source_status", **where, status="active") == 1
    assert value("shardwatch_source_status", **where, status="error") == 0
    assert value("shardwatch_shards", **where, state="open") == 5
    assert value("shardwatch_leases_held", worker="ip-10-0-0-1:42") == 1
    assert 90 <= value("shardwatch_trigger_iterator_age_seconds", **named) < 92
    assert value("shardwatch_trigger_cursors_waiting", **named) == 1
    assert value("shardwatch_processes_alive", role="worker") == 1
    assert value("shardwatch_processes_alive", role="reader") == 0  # its queues name no reader queue
    assert value("shardwatch_processes_alive", role="beat") == 0
    assert 0 <= value("shardwatch_heartbeat_age_seconds", role="worker") < 2


def test_it_exports_stuck_shards_retried_batches_enabled_triggers_and_every_outcome_from_zero(owner, system):
    source, trigger = system
    now = timezone.now()
    # The leased shard's polls fail and its checkpoint has been still for 10 minutes.
    Shard.objects.filter(stream__source=source, lease_owner="reader-token").update(
        error_count=3, last_error="AccessDeniedException", last_record_at=now - timedelta(minutes=10)
    )
    TriggerCursor.objects.filter(trigger=trigger, shard__shard_id="shardId-00001").update(attempt=4)
    paused = Trigger.objects.create(name="paused", source=source, target=Trigger.Target.PYTHON, handler="x.y", enabled=False)

    found = samples(owner.get("/metrics").content.decode())

    def value(name, **labels):
        return found.get((name, frozenset({key: str(v) for key, v in labels.items()}.items())))

    where = {"source": source.pk, "table": "orders", "region": "eu-west-1"}
    named = {"trigger": trigger.pk, "trigger_name": "notify"}
    paused_named = {"trigger": paused.pk, "trigger_name": "paused"}
    assert value("shardwatch_shards_stuck", **where) == 1
    assert value("shardwatch_trigger_batch_attempts", **named) == 4
    assert value("shardwatch_trigger_batch_attempts", **paused_named) == 0
    assert value("shardwatch_trigger_enabled", **named) == 1
    assert value("shardwatch_trigger_enabled", **paused_named) == 0
    # Each trigger's every outcome starts at 0, so its first failure is an increase.
    assert value("shardwatch_trigger_invocations_total", **named, outcome="success") == 3
    for outcome in Outcome.values:
        assert value("shardwatch_trigger_invocations_total", **paused_named, outcome=outcome) == 0
        if outcome != "success":
            assert value("shardwatch_trigger_invocations_total", **named, outcome=outcome) == 0


def test_it_exports_whether_each_source_is_enabled_so_the_rules_can_leave_disabled_ones_out(owner, system):
    source, _ = system
    paused = StreamSource.objects.create(
        table_name="archive", region="eu-west-1", status=StreamSource.Status.ACTIVE, enabled=False,
        stream_arn="arn:aws:dynamodb:eu-west-1:123456789012:table/archive/stream/1",
    )

    found = samples(owner.get("/metrics").content.decode())

    def value(name, **labels):
        return found.get((name, frozenset({key: str(v) for key, v in labels.items()}.items())))

    where = {"source": source.pk, "table": "orders", "region": "eu-west-1"}
    paused_where = {"source": paused.pk, "table": "archive", "region": "eu-west-1"}
    assert value("shardwatch_source_enabled", **where) == 1
    assert value("shardwatch_source_enabled", **paused_where) == 0
    # Not up, and not a fault: rules.yml joins ShardwatchSourceNotActive on shardwatch_source_enabled.
    assert value("shardwatch_source_up", **paused_where) == 0


def test_it_states_the_resolution_of_the_lag_in_its_help(owner, system):
    # A caught-up shard's poll time is written at lease renewals only (an idle poll writes
    # nothing), so an idle source's lag is a sawtooth of one renewal interval (streams.lag).
    families = {family.name: family for family in text_string_to_metric_families(owner.get("/metrics").content.decode())}

    for name in ("shardwatch_iterator_age_seconds", "shardwatch_shard_iterator_age_seconds"):
        assert "resolution: one lease renewal, 5 s with the default SHARDWATCH_LEASE_S of 15" in families[name].documentation


def test_it_never_shows_item_data(owner, system):
    source, _ = system
    shard = Shard.objects.filter(stream__source=source).first()
    ChangeRecord.objects.create(
        source=source, shard=shard, sequence_number="1", sequence_key=sequence_key("1"), event_id="e1",
        event_name="INSERT", keys={"pk": {"S": "customer-4711"}}, new_image={"card": {"S": "4111-1111"}},
        item_key="customer-4711", partition_key="customer-4711", approximate_creation_time=timezone.now(), size_bytes=1,
    )

    text = owner.get("/metrics").content.decode()

    assert "customer-4711" not in text and "4111-1111" not in text


def test_it_passes_promtool_check_metrics(owner, system):
    result = promtool_check_metrics(owner.get("/metrics").content)

    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_it_reads_a_fixed_number_of_queries(owner, system, django_assert_max_num_queries):
    # 17 with the login's permission check (METRICS_PERMISSION), which a token's scrape skips.
    with django_assert_max_num_queries(17):
        owner.get("/metrics")
    source, _ = system
    Trigger.objects.create(name="second", source=source, target=Trigger.Target.PYTHON, handler="x.y")

    with django_assert_max_num_queries(17):
        assert owner.get("/metrics").status_code == 200


def test_it_starts_counters_of_each_source_and_trigger_at_zero(owner, system):
    # increase() needs a sample before the first count: without a zero series the first gap of
    # a source, or its trigger's first dead letter, would never fire the rules that watch them.
    source, trigger = system
    quiet = StreamSource.objects.create(table_name="quiet", region="eu-west-1")

    found = samples(owner.get("/metrics").content.decode())

    def value(name, **labels):
        return found.get((name, frozenset({key: str(v) for key, v in labels.items()}.items())))

    assert value("shardwatch_gaps_total", source=quiet.pk, table="quiet", region="eu-west-1") == 0
    assert value("shardwatch_records_read_total", source=quiet.pk, table="quiet", region="eu-west-1") == 0
    assert value("shardwatch_records_read_total", source=source.pk, table="orders", region="eu-west-1") == 42
    assert value("shardwatch_trigger_dead_letters_total", trigger=trigger.pk, trigger_name="notify") == 0
    assert value("shardwatch_trigger_dead_letter_records_total", trigger=trigger.pk, trigger_name="notify") == 0


def test_it_exports_every_metric_the_shipped_alerting_rules_read(owner, system):
    rules = (Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml").read_text()
    wanted = set(re.findall(r"\bshardwatch_[a-z_]+", rules))
    exported = {name for name, _ in samples(owner.get("/metrics").content.decode())}

    assert wanted and wanted <= exported, f"rules.yml reads metrics /metrics does not export: {wanted - exported}"

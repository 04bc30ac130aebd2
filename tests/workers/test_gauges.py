"""Beat's gauge sampling (workers.gauges, the sample_gauges task): the lag of each source and
the iterator age of each trigger kept per minute for the charts, and old rows pruned."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from meters.heartbeats import heartbeat_beat
from meters.models import Heartbeat, Meter, MeterMinute
from meters.store import labels_key, meter_sample, series_steps
from streams.models import Shard, Stream, StreamSource
from workers.models import Trigger, TriggerCursor
from workers.tasks import sample_gauges

pytestmark = pytest.mark.django_db


@pytest.fixture
def behind():
    now = timezone.now()
    source = StreamSource.objects.create(table_name="orders", region="eu-west-1", stream_arn="arn:aws:dynamodb:eu-west-1:1:table/orders/stream/1")
    stream = Stream.objects.create(source=source, arn=source.stream_arn)
    shard = Shard.objects.create(stream=stream, shard_id="shardId-1", iterator_age_s=20, iterator_age_at=now)
    trigger = Trigger.objects.create(name="notify", source=source, target=Trigger.Target.PYTHON, handler="x.y")
    TriggerCursor.objects.create(trigger=trigger, shard=shard, pending_since=now - timedelta(seconds=45))
    return source, trigger


def test_it_samples_source_lag_and_trigger_iterator_age_into_the_minute(behind):
    source, trigger = behind

    sample_gauges()

    def sampled(name, labels):
        now = timezone.now()
        _, series = series_steps(name=name, since=now - timedelta(minutes=2), until=now, step=timedelta(minutes=1))
        [value] = [value for value in series[labels_key(labels=labels)] if value is not None]
        return value

    lag = sampled("shardwatch_iterator_age_seconds", {"source": source.pk})
    age = sampled("shardwatch_trigger_iterator_age_seconds", {"trigger": trigger.pk})
    assert 20 <= lag < 22 and 45 <= age < 47


def test_it_prunes_minutes_older_than_25_hours_and_heartbeats_silent_for_a_day():
    now = timezone.now()
    meter_sample(name="shardwatch_iterator_age_seconds", labels={"source": 1}, value=1, at=now - timedelta(hours=26))
    meter_sample(name="shardwatch_iterator_age_seconds", labels={"source": 1}, value=2, at=now - timedelta(hours=24))
    heartbeat_beat(process="gone@host:1", role=Heartbeat.Role.WORKER)
    heartbeat_beat(process="here@host:2", role=Heartbeat.Role.WORKER)
    Heartbeat.objects.filter(process="gone@host:1").update(seen_at=now - timedelta(hours=25))

    sample_gauges()

    assert list(MeterMinute.objects.values_list("value", flat=True)) == [2]
    assert list(Heartbeat.objects.values_list("process", flat=True)) == ["here@host:2"]


def test_it_is_scheduled_every_15_seconds_and_expires_like_the_others():
    entry = settings.CELERY_BEAT_SCHEDULE["sample-gauges"]

    assert entry["task"] == "workers.tasks.sample_gauges"
    assert entry["schedule"] == settings.SHARDWATCH_GAUGES_SAMPLE_S == 15.0
    assert entry["options"]["expires"] == entry["schedule"]


def test_it_ends_the_series_of_a_source_and_a_trigger_an_hour_after_they_went(behind):
    source, trigger = behind
    now = timezone.now()
    counted_at = {"kept": now - timedelta(hours=2), "gone_long": now - timedelta(hours=2), "gone_lately": now - timedelta(minutes=10)}
    gone_source, gone_lately_source = source.pk + 100, source.pk + 101
    gone_trigger = trigger.pk + 100
    rows = [
        ("shardwatch_records_read_total", {"source": source.pk}, counted_at["kept"]),
        ("shardwatch_records_read_total", {"source": gone_source}, counted_at["gone_long"]),
        ("shardwatch_poll_errors_total", {"source": gone_source, "error": "ThrottlingException"}, counted_at["gone_long"]),
        ("shardwatch_records_read_total", {"source": gone_lately_source}, counted_at["gone_lately"]),
        ("shardwatch_trigger_invocations_total", {"trigger": trigger.pk, "outcome": "ok"}, counted_at["kept"]),
        ("shardwatch_trigger_invocations_total", {"trigger": gone_trigger, "outcome": "ok"}, counted_at["gone_long"]),
        ("shardwatch_trigger_batch_duration_seconds_bucket", {"trigger": gone_trigger, "le": "+Inf"}, counted_at["gone_long"]),
        ("shardwatch_trigger_batch_duration_seconds_count", {"trigger": gone_trigger}, counted_at["gone_long"]),
        # One bucket of a histogram written lately keeps the whole histogram, or its buckets
        # would no longer add up.
        ("shardwatch_trigger_batch_duration_seconds_bucket", {"trigger": trigger.pk + 101, "le": "0.1"}, counted_at["gone_long"]),
        ("shardwatch_trigger_batch_duration_seconds_bucket", {"trigger": trigger.pk + 101, "le": "+Inf"}, counted_at["gone_lately"]),
    ]
    for name, labels, at in rows:
        Meter.objects.create(name=name, labels=labels_key(labels=labels), value=3, updated_at=at)

    sample_gauges()

    left = set(Meter.objects.values_list("name", "labels"))
    assert left == {
        (name, labels_key(labels=labels)) for name, labels, at in rows
        if gone_source not in (labels.get("source"),) and gone_trigger not in (labels.get("trigger"),)
    }
    assert len(left) == 5

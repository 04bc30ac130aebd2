"""meters.store: counts buffered in a process add up in the database, once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from meters.models import Meter, MeterMinute
from meters.store import meter_count, meter_observe, meter_sample, meters_flush, series_steps

pytestmark = pytest.mark.django_db


def value(name, **labels):
    from meters.store import labels_key

    return Meter.objects.get(name=name, labels=labels_key(labels=labels)).value


def test_it_adds_counts_from_two_flushes_into_one_series():
    meter_count(name="shardwatch_records_read_total", labels={"source": 1}, value=3)
    meter_count(name="shardwatch_records_read_total", labels={"source": 1}, value=2)
    assert meters_flush() == 2  # the total and its minute
    meter_count(name="shardwatch_records_read_total", labels={"source": 1}, value=5)
    meters_flush()
    assert value("shardwatch_records_read_total", source=1) == 10
    assert MeterMinute.objects.get(name="shardwatch_records_read_total").value == 10
    assert meters_flush() == 0


def test_it_keeps_histograms_as_cumulative_buckets():
    for seconds in (0.003, 0.2, 7):
        meter_observe(name="shardwatch_ingest_latency_seconds", labels={"source": 2}, value=seconds)
    meters_flush()
    assert value("shardwatch_ingest_latency_seconds_bucket", source=2, le="0.005") == 1
    assert value("shardwatch_ingest_latency_seconds_bucket", source=2, le="0.25") == 2
    assert value("shardwatch_ingest_latency_seconds_bucket", source=2, le="10.0") == 3
    assert value("shardwatch_ingest_latency_seconds_bucket", source=2, le="+Inf") == 3
    assert value("shardwatch_ingest_latency_seconds_count", source=2) == 3
    assert value("shardwatch_ingest_latency_seconds_sum", source=2) == pytest.approx(7.203)


def test_it_refuses_unknown_meters_wrong_labels_and_negative_counts():
    with pytest.raises(ValueError, match="not a counter"):
        meter_count(name="shardwatch_nothing_total", labels={})
    with pytest.raises(ValueError, match="takes labels"):
        meter_count(name="shardwatch_records_read_total", labels={"trigger": 1})
    with pytest.raises(ValueError, match="cannot go down"):
        meter_count(name="shardwatch_records_read_total", labels={"source": 1}, value=-1)


def test_it_keeps_the_highest_gauge_sample_of_each_minute():
    now = timezone.now().replace(second=10)
    meter_sample(name="shardwatch_iterator_age_seconds", labels={"source": 1}, value=4, at=now)
    meter_sample(name="shardwatch_iterator_age_seconds", labels={"source": 1}, value=9, at=now)
    meter_sample(name="shardwatch_iterator_age_seconds", labels={"source": 1}, value=2, at=now)
    meter_sample(name="shardwatch_iterator_age_seconds", labels={"source": 1}, value=1, at=now - timedelta(minutes=2))
    _, series = series_steps(
        name="shardwatch_iterator_age_seconds", since=now - timedelta(minutes=2), until=now, step=timedelta(minutes=1)
    )
    assert series['{"source": "1"}'] == [1, None, 9]  # a minute with no sample is a gap, not a zero

"""Alerts in real processes: beat schedules the evaluation, a Celery worker runs it and sends
each delivery in a task of its own; DynamoDB Local, a reader worker, a failing Python handler
and a real webhook receiver."""

import pytest

from alerts.models import Delivery, Rule
from streams.sources import source_add
from tests.support.alert_receivers import signature_valid
from tests.support.processes import Processes, wait_for
from workers.models import Trigger

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def processes(tmp_path):
    started = Processes(SHARDWATCH_ALERTS_INTERVAL_S="2", SHARDWATCH_DISPATCH_INTERVAL_S="1",
                        SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S="1", SHARDWATCH_DISCOVERY_INTERVAL_S="2")
    yield started
    started.stop_all()


def test_it_notifies_once_from_beat_and_a_worker(processes, make_table, dynamodb, channels, receiver, tmp_path):
    table = make_table(range_key=False, prefix="alerting")
    source = source_add(table_name=table, region="us-east-1")
    trigger = Trigger.objects.create(name="failing", source=source, target=Trigger.Target.PYTHON,
                                     handler="tests.handlers.triggers.fail_always", maximum_retry_attempts=0)
    rule = Rule.objects.create(name="failing-errors", condition=Rule.Condition.TRIGGER_ERROR_RATE, trigger=trigger,
                               threshold=0, window_s=300)
    rule.channels.set([channels.webhook])
    processes.worker("alerts", concurrency=2)
    processes.reader("alerts-reader")
    processes.beat(tmp_path / "beat-schedule")

    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})

    assert wait_for(lambda: receiver.received, timeout=60)
    # Several evaluations later, still the one notification.
    assert wait_for(lambda: False, timeout=6) is False
    [request] = receiver.received
    assert request["json"]["alert"] == "failing-errors" and request["json"]["kind"] == "fired"
    assert signature_valid(secret=channels.secret, request=request)
    assert Delivery.objects.get().status == Delivery.Status.SENT


def test_it_tells_that_no_worker_is_alive_from_beat_alone(processes, channels, receiver, tmp_path):
    # No worker and no reader runs: only beat can evaluate the rule and send its notification.
    rule = Rule.objects.create(name="no-worker", condition=Rule.Condition.NO_WORKER, threshold=6)
    rule.channels.set([channels.webhook])
    processes.beat(tmp_path / "beat-schedule")

    def told():
        return {r["json"]["subject"] for r in receiver.received if r["json"]["kind"] == "fired"}

    assert wait_for(lambda: {"role:worker", "role:reader"} <= told(), timeout=60)
    request = next(r for r in receiver.received if r["json"]["subject"] == "role:worker")
    assert request["json"]["alert"] == "no-worker" and signature_valid(secret=channels.secret, request=request)
    # Later evaluations, beat's own, notify nobody again.
    assert wait_for(lambda: False, timeout=5) is False
    assert len(receiver.received) == 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}

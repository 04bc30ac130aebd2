"""alert_notify_s_p99: from a Python handler starting to fail to the webhook receiver getting
the alert, through real Celery worker, reader and beat processes and DynamoDB Local.

Each trial adds a trigger (StartingPosition LATEST, a handler that always fails) and a rule on
it, "error rate above 0 % over 5 minutes" with no duration, sending to a signed webhook that
this process serves; then writes one item. The clock starts when the first invocation ends
(Invocation.started_at + duration_ms: the handler has failed) and stops when the receiver
gets the "fired" notification. Beat evaluates every SHARDWATCH_ALERTS_INTERVAL_S (15 s), so
the figure is about that interval plus a task's latency; the target is 30 s.
"""

import os
import time
import uuid
from datetime import timedelta

import boto3
from django.db import connection

from alerts.models import Channel, Rule
from bench import workload
from bench.common import ROOT, percentile, reset_tables
from streams.models import Shard
from streams.sources import source_add
from tests.support.alert_receivers import alert_receiver, signature_valid
from tests.support.processes import Processes
from workers.models import Invocation, Trigger
from workers.targets.webhook import webhook_secret_new

TRIALS = 6
TRIAL_TIMEOUT_S = 90


def bench_alert_notify(*, trials: int = TRIALS) -> dict:
    reset_tables()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE alerts_channel, alerts_rule, workers_trigger CASCADE")
    table = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    workload.create_table(table)
    source = source_add(table_name=table, region="us-east-1")
    dynamodb = boto3.client("dynamodb")
    processes = Processes(DJANGO_SETTINGS_MODULE="bench.settings")
    processes.worker("bench-alerts", concurrency=2)
    processes.reader("bench-alerts-reader")
    processes.beat(ROOT / "var" / f"bench-alerts-beat-{os.getpid()}")
    latencies, signed = [], 0
    try:
        deadline = time.monotonic() + 60
        while not Shard.objects.filter(stream__source=source, last_polled_at__isnull=False).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no reader polled the shard within 60 s; see test-artifacts/bench-alerts-reader.log")
            time.sleep(0.2)
        with alert_receiver() as receiver:
            secret, encrypted = webhook_secret_new()
            channel = Channel.objects.create(name="bench", kind=Channel.Kind.WEBHOOK, url=receiver.url + "/hook",
                                             secret_encrypted=encrypted)
            for number in range(trials):
                trigger = Trigger.objects.create(
                    name=f"bench-alert-{number}", source=source, target=Trigger.Target.PYTHON,
                    handler="bench.handlers.handler_fail", starting_position=Trigger.StartingPosition.LATEST,
                    maximum_retry_attempts=0,
                )
                rule = Rule.objects.create(name=f"bench-alert-{number}", condition=Rule.Condition.TRIGGER_ERROR_RATE,
                                           trigger=trigger, threshold=0, window_s=300, repeat_interval_s=0)
                rule.channels.set([channel])
                # Trials start at different points of beat's 15 s cycle.
                time.sleep(number * 2.5 % 15)
                dynamodb.put_item(TableName=table, Item={"pk": {"S": f"alert-{number}"}})
                request = _wait_for_alert(receiver, name=rule.name)
                invocation = Invocation.objects.filter(trigger=trigger).order_by("id").first()
                failed_at = invocation.started_at + timedelta(milliseconds=invocation.duration_ms)
                latencies.append(request["at"] - failed_at.timestamp())
                signed += signature_valid(secret=secret, request=request)
                Trigger.objects.filter(pk=trigger.pk).update(enabled=False)
                Rule.objects.filter(pk=rule.pk).update(enabled=False)
    finally:
        processes.stop_all()
    return {
        "alert_notify_trials": len(latencies),
        "alert_notify_s": [round(value, 2) for value in latencies],
        "alert_notify_s_p50": round(percentile(latencies, 0.50), 2),
        "alert_notify_s_p99": round(percentile(latencies, 0.99), 2),
        "alert_notify_signed": signed,
    }


def _wait_for_alert(receiver, *, name: str) -> dict:
    deadline = time.monotonic() + TRIAL_TIMEOUT_S
    while time.monotonic() < deadline:
        with receiver.lock:
            for request in receiver.received:
                if request["json"]["alert"] == name and request["json"]["kind"] == "fired":
                    return request
        time.sleep(0.05)
    raise RuntimeError(f"no alert for {name} within {TRIAL_TIMEOUT_S} s; see test-artifacts/bench-alerts.log")

"""The demo's alert: one rule on the example trigger, and a webhook channel whose receiver
(`manage.py demo_alert_receiver`, the Procfile's `alerts` process) prints each alert."""

import io
import os
import subprocess
import sys
import uuid

import pytest
from django.core.management import call_command

from alerts.delivery import channel_test
from alerts.models import Channel, Rule
from demo.provision import DEMO_ALERT_CHANNEL, DEMO_ALERT_RULE
from tests.support.dynamodb_local import free_port
from tests.support.processes import ROOT, database_url


def create_demo(table, port):
    os.environ["DEMO_ALERT_PORT"] = str(port)
    try:
        call_command("demo_writer", "--create", "--table", table, "--count", "0", stdout=io.StringIO())
    finally:
        del os.environ["DEMO_ALERT_PORT"]


@pytest.mark.django_db
def test_it_adds_one_alert_rule_on_the_example_trigger(dynamodb):
    table = f"demo-{uuid.uuid4().hex[:10]}"
    create_demo(table, 8766)
    create_demo(table, 9999)

    [rule] = Rule.objects.all()
    assert rule.name == DEMO_ALERT_RULE and rule.condition == Rule.Condition.DEAD_LETTERS
    assert rule.trigger.name == "demo-notify-shipped"
    [channel] = rule.channels.all()
    assert channel.kind == Channel.Kind.WEBHOOK and channel.url == "http://127.0.0.1:9999/alerts"


@pytest.mark.django_db(transaction=True)
def test_it_prints_the_alerts_the_demo_receiver_gets_with_their_signature_checked(dynamodb):
    port = free_port()
    create_demo(f"demo-{uuid.uuid4().hex[:10]}", port)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    receiver = subprocess.Popen(
        [sys.executable, "manage.py", "demo_alert_receiver", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert "Printing the alerts sent to" in receiver.stdout.readline()
        # The receiver prints an alert before it answers, so the line is there once this returns.
        assert channel_test(channel=Channel.objects.get(name=DEMO_ALERT_CHANNEL)) == ""
        line = receiver.stdout.readline()
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    assert line.startswith("TEST Test notification: A test of the channel demo-console")
    assert line.rstrip().endswith("(signature valid)")

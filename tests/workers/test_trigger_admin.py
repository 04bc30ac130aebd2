"""Configuring triggers in the admin: Lambda's settings, validated with clear messages."""

import json

import pytest
from django.contrib.auth.models import User

from streams.models import StreamSource
from workers.models import Trigger, TriggerCursor
from workers.targets.webhook import webhook_secret_decrypt

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "a-long-password-1"))
    return client


@pytest.fixture
def source():
    return StreamSource.objects.create(table_name="orders", region="us-east-1", key_schema=["pk"])


def form(source, **overrides):
    data = {
        "name": "ship-emails", "source": source.pk, "enabled": "on", "target": "python",
        "handler": "tests.handlers.triggers.record_batches", "webhook_url": "", "function_name": "", "timeout_s": 3,
        "batch_size": 100, "maximum_batching_window_s": 0, "starting_position": "TRIM_HORIZON",
        "filter_patterns": "", "maximum_retry_attempts": -1, "maximum_record_age_s": -1,
        "parallelization_factor": 1, "on_failure_sqs_url": "", "on_failure_sns_arn": "",
    }
    data.update(overrides)
    return data


def post(client, data):
    return client.post("/admin/workers/trigger/add/", data)


def test_it_adds_a_python_trigger_with_lambdas_defaults(admin_client, source):
    response = post(admin_client, form(source, filter_patterns='{"eventName": ["INSERT"]}'))
    assert response.status_code == 302
    trigger = Trigger.objects.get(name="ship-emails")
    assert trigger.batch_size == 100 and trigger.maximum_retry_attempts == -1
    assert trigger.filter_patterns == ['{"eventName":["INSERT"]}']


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"handler": "tests.no_such_module.handler"}, "No module named"),
        ({"batch_size": 10001}, "less than or equal to 10000"),
        ({"batch_size": 0}, "greater than or equal to 1"),
        ({"maximum_batching_window_s": 301}, "less than or equal to 300"),
        ({"maximum_retry_attempts": -2}, "greater than or equal to -1"),
        ({"maximum_record_age_s": 30}, "-1 (no limit) or between 60 and 604800"),
        ({"parallelization_factor": 11}, "less than or equal to 10"),
        ({"filter_patterns": json.dumps([{"eventName": ["INSERT"]}] * 6)}, "At most 5 patterns"),
        ({"filter_patterns": '{"eventName": "INSERT"}'}, "Pattern 1 is not valid"),
        ({"filter_patterns": "{not json"}, "Not valid JSON"),
        ({"target": "webhook", "handler": ""}, "A webhook trigger needs a URL"),
        ({"target": "lambda", "handler": ""}, "A Lambda trigger needs a function name"),
    ],
)
def test_it_explains_bad_settings(admin_client, source, overrides, message):
    response = post(admin_client, form(source, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Trigger.objects.exists()


def test_it_shows_a_webhook_secret_once_and_stores_it_encrypted(admin_client, source):
    response = post(
        admin_client, form(source, target="webhook", handler="", webhook_url="https://hooks.example.com/x")
    )
    assert response.status_code == 302
    trigger = Trigger.objects.get()
    secret = webhook_secret_decrypt(trigger.webhook_secret_encrypted)
    assert secret not in trigger.webhook_secret_encrypted
    first = admin_client.get(response["Location"]).content.decode()
    again = admin_client.get(f"/admin/workers/trigger/{trigger.pk}/change/").content.decode()
    assert secret in first and "not shown again" in first
    assert secret not in again


def test_it_resets_a_trigger_to_latest_from_the_admin(admin_client, make_table, dynamodb):
    from streams.models import ChangeRecord
    from streams.sources import source_add
    from tests.support.readers import read_until_idle

    table = make_table(range_key=False)
    watched = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "b"}})
    read_until_idle(source_id=watched.pk)
    post(admin_client, form(watched))
    trigger = Trigger.objects.get()

    admin_client.post("/admin/workers/trigger/", {"action": "reset_to_latest", "_selected_action": [trigger.pk]})

    [cursor] = TriggerCursor.objects.filter(trigger=trigger)
    newest = ChangeRecord.objects.filter(source=watched).order_by("-sequence_key").first()
    assert cursor.position == newest.sequence_key and cursor.attempt == 0


def test_it_shows_which_recent_records_the_patterns_would_send(admin_client, make_table, dynamodb):
    from streams.sources import source_add
    from tests.support.readers import read_until_idle

    table = make_table(range_key=False)
    watched = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "kept"}, "status": {"S": "SHIPPED"}})
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "skipped"}, "status": {"S": "PENDING"}})
    read_until_idle(source_id=watched.pk)
    post(admin_client, form(watched, filter_patterns='{"dynamodb": {"NewImage": {"status": {"S": ["SHIPPED"]}}}}'))
    trigger = Trigger.objects.get()

    page = admin_client.get(f"/admin/workers/trigger/{trigger.pk}/test-pattern/").content.decode()

    assert "<strong>1</strong> of 2 would be sent; 1 would be skipped" in page
    assert "kept" in page and "skipped" not in page.split("<table>")[1]


def test_it_asks_for_a_time_or_a_sequence_number_to_reset_to(admin_client, source):
    post(admin_client, form(source))
    trigger = Trigger.objects.get()
    data = {"action": "reset_to_time_or_sequence", "_selected_action": [trigger.pk], "apply": "1", "at": "", "sequence_number": ""}
    page = admin_client.post("/admin/workers/trigger/", data).content.decode()
    assert "Give a time or a sequence number" in page

"""A trigger runner's log lines name the trigger, source and shard (LOG_FORMAT=json fields)."""

import pytest

from streams.models import Shard
from tests.support.logs import json_lines
from tests.support.triggering import run_until_idle, trigger_for
from workers.models import DeadLetter

pytestmark = pytest.mark.django_db


def test_it_logs_a_dead_letter_with_its_trigger_source_and_shard(orders_table):
    orders_table.put("order-1", status="new")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=0)

    with json_lines("workers") as lines:
        run_until_idle(trigger)

    assert DeadLetter.objects.filter(trigger=trigger).count() == 1
    [line] = [line for line in lines() if "dead-letter list" in line["message"]]
    assert line["level"] == "WARNING"
    assert line["message"].startswith(f"trigger {trigger.name}: 1 record(s) went to the dead-letter list.")
    assert line["trigger"] == trigger.pk
    assert line["source"] == orders_table.pk
    assert line["shard"] == Shard.objects.get(stream__source=orders_table).shard_id


def test_it_logs_a_dead_letter_with_the_error_type_and_a_link_not_the_handlers_message(orders_table):
    orders_table.put("order-1", card="4111-1111-1111-1111")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_echoing_items", maximum_retry_attempts=0)

    with json_lines("workers") as lines:
        run_until_idle(trigger)

    letter = DeadLetter.objects.get(trigger=trigger)
    [line] = [line for line in lines() if "dead-letter list" in line["message"]]
    assert "4111" not in line["message"] and "cannot ship" not in line["message"]
    assert "ValueError" in line["message"]
    assert line["message"].endswith(f"/invocations/{letter.invocation_id}/")
    # The reason goes to the trigger's SQS/SNS destination too (workers.destinations).
    assert "4111" not in letter.reason and "ValueError" in letter.reason

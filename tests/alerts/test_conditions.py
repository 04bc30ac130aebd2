"""Each condition end to end: the state is made the way it happens (DynamoDB Local, the
readers, a failing Python handler; the fake Streams API where DynamoDB Local cannot make it),
the alert fires to a real webhook receiver, resolves, and is not sent twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import AlertState, Rule
from meters.heartbeats import heartbeat_beat
from meters.models import Heartbeat
from streams.models import Shard, StreamSource
from streams.sources import source_discover
from tests.support.alerting import evaluate_and_send
from tests.support.fake_sources import numbered
from tests.support.fake_streams import FakeShard, FakeStreams, aws_error
from tests.support.readers import Readers, read_until_idle
from tests.support.triggering import retry_rounds, run_until_idle, trigger_for
from workers.models import DeadLetter, Invocation, TriggerCursor
from workers.operations import cursor_batch_skip
from tests.support.personas import persona_user

pytestmark = pytest.mark.django_db


def rule_for(condition, channel, **fields):
    rule = Rule.objects.create(name=f"rule-{condition}", condition=condition, **fields)
    rule.channels.set([channel])
    return rule


def kinds(receiver):
    return [request["json"]["kind"] for request in receiver.received]


def twice(now):
    """An evaluation tick and the next one, 15 s later: the second must send nothing new."""
    evaluate_and_send(now=now)
    evaluate_and_send(now=now + timedelta(seconds=15))


def test_it_alerts_on_a_source_whose_table_is_gone(orders_table, dynamodb, channels, receiver):
    rule_for(Rule.Condition.SOURCE_INACTIVE, channels.webhook, threshold=0)
    source_discover(source_id=orders_table.pk)
    twice(timezone.now())
    assert kinds(receiver) == []

    dynamodb.delete_table(TableName=orders_table.table_name)
    source_discover(source_id=orders_table.pk)
    twice(timezone.now())

    assert kinds(receiver) == ["fired"]
    fired = receiver.received[0]["json"]
    assert fired["subject"] == f"source:{orders_table.pk}"
    assert "Table missing" in fired["summary"] and "does not exist" in fired["details"]["last_error"]

    dynamodb.create_table(
        TableName=orders_table.table_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    source_discover(source_id=orders_table.pk)
    assert StreamSource.objects.get(pk=orders_table.pk).status == StreamSource.Status.ACTIVE
    twice(timezone.now())

    assert kinds(receiver) == ["fired", "resolved"]


def test_it_waits_n_minutes_before_calling_a_source_inactive(orders_table, dynamodb, channels, receiver):
    rule_for(Rule.Condition.SOURCE_INACTIVE, channels.webhook, threshold=2)
    dynamodb.delete_table(TableName=orders_table.table_name)
    source_discover(source_id=orders_table.pk)
    now = timezone.now()

    twice(now)
    assert kinds(receiver) == []
    evaluate_and_send(now=now + timedelta(minutes=2))

    assert kinds(receiver) == ["fired"]


def test_it_does_not_alert_on_a_disabled_source_that_is_not_active_or_has_a_gap(fake_source, orders_table, dynamodb, channels, receiver):
    # As rules.yml's joins on shardwatch_source_enabled: disabled means left alone on purpose.
    rule_for(Rule.Condition.SOURCE_INACTIVE, channels.webhook, threshold=0)
    gap_rule = Rule.objects.create(name="gaps", condition=Rule.Condition.GAP, threshold=0, window_s=600)
    gap_rule.channels.set([channels.webhook])
    dynamodb.delete_table(TableName=orders_table.table_name)
    source_discover(source_id=orders_table.pk)
    shard = FakeShard("shardId-1", records=numbered("k", 2))
    fake = FakeStreams([shard])
    trimmed = fake_source(fake)
    read_until_idle(source_id=trimmed.pk)
    shard.records[:] = numbered("late", 2, start=100)
    fake.errors["GetShardIterator"] = [aws_error("TrimmedDataAccessException", "GetShardIterator")]
    read_until_idle(source_id=trimmed.pk)
    StreamSource.objects.filter(pk__in=[orders_table.pk, trimmed.pk]).update(enabled=False)

    twice(timezone.now())

    assert StreamSource.objects.get(pk=orders_table.pk).status != StreamSource.Status.ACTIVE
    assert trimmed.gaps.count() == 1
    assert kinds(receiver) == []


def test_it_alerts_on_a_gap(fake_source, channels, receiver):
    # DynamoDB Local never trims its streams, so the gap comes from the fake Streams API.
    shard = FakeShard("shardId-1", records=numbered("k", 2))
    fake = FakeStreams([shard])
    source = fake_source(fake)
    rule_for(Rule.Condition.GAP, channels.webhook, threshold=0, window_s=600)
    read_until_idle(source_id=source.pk)
    shard.records[:] = numbered("late", 2, start=100)
    fake.errors["GetShardIterator"] = [aws_error("TrimmedDataAccessException", "GetShardIterator")]
    read_until_idle(source_id=source.pk)
    now = timezone.now()

    twice(now)

    assert kinds(receiver) == ["fired"]
    assert "1 gap(s) recorded on fake" in receiver.received[0]["json"]["summary"]
    twice(now + timedelta(seconds=601))
    assert kinds(receiver) == ["fired", "resolved"]


def test_it_alerts_on_a_stuck_shard(fake_source, channels, receiver):
    # A shard whose polls keep failing while a reader holds it: DynamoDB Local's shards do not
    # fail on demand, so the fake Streams API fails them.
    shard = FakeShard("shardId-1", records=numbered("k", 3))
    fake = FakeStreams([shard])
    source = fake_source(fake)
    fake.errors[("GetRecords", "shardId-1")] = [aws_error("InternalServerError", "GetRecords", "try later")] * 20
    rule_for(Rule.Condition.SHARD_STUCK, channels.webhook, threshold=1)
    readers = Readers(source_ids=[source.pk])
    try:
        readers.until_idle(max_rounds=3)
        held = Shard.objects.get(stream__source=source)
        assert held.lease_owner and held.error_count > 0
        now = timezone.now()

        twice(now)
        assert kinds(receiver) == []  # not for a minute yet
        # A minute passes for the shard (the reader's lease is renewed in real time, so the
        # shard's clock moves back rather than the evaluation's forward).
        Shard.objects.filter(pk=held.pk).update(discovered_at=held.discovered_at - timedelta(minutes=1))
        evaluate_and_send(now=timezone.now())
        evaluate_and_send(now=timezone.now())

        assert kinds(receiver) == ["fired"]
        fired = receiver.received[0]["json"]
        assert fired["subject"] == f"shard:{held.pk}"
        assert "poll(s) failed" in fired["summary"] and "try later" in fired["summary"]

        fake.errors.clear()
        Shard.objects.filter(pk=held.pk).update(error_count=0)  # the reader's backoff is not what this is about
        readers.until_idle()
    finally:
        readers.stop()
    twice(timezone.now())
    assert kinds(receiver) == ["fired", "resolved"]


def test_it_alerts_on_dead_letters_added(orders_table, channels, receiver, inbox, owner):
    orders_table.put("a")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=0)
    rule = rule_for(Rule.Condition.DEAD_LETTERS, channels.webhook, trigger=trigger, threshold=0, window_s=300)
    rule.channels.add(channels.email)
    run_until_idle(trigger)
    assert DeadLetter.objects.filter(trigger=trigger).count() == 1
    now = timezone.now()

    twice(now)

    assert kinds(receiver) == ["fired"]
    fired = receiver.received[0]["json"]
    assert "added 1 dead letter(s)" in fired["summary"]
    # Links read as words on the page and in email; the webhook's JSON keeps the keys.
    url = fired["details"]["links"]["dead_letters"]
    assert f"Dead letters: {url}" in inbox.messages[0]["message"].get_content()
    page = owner.get("/alerts/").content.decode()
    assert '>Dead letters</a>' in page and ">dead_letters<" not in page
    twice(now + timedelta(seconds=301))
    assert kinds(receiver) == ["fired", "resolved"]


def poisoned(orders_table, keys):
    for key in keys:
        orders_table.put(key)
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=-1)
    retry_rounds(trigger, 3)
    return trigger


def test_it_names_a_poison_record_and_skips_it_from_the_alerts_link(orders_table, channels, receiver, owner):
    trigger = poisoned(orders_table, ["a"])
    rule_for(Rule.Condition.POISON_RECORD, channels.webhook, trigger=trigger, threshold=2)
    cursor = TriggerCursor.objects.get(trigger=trigger)
    assert cursor.attempt == 3
    last = Invocation.objects.filter(trigger=trigger).order_by("-id").first()
    now = timezone.now()

    twice(now)

    assert kinds(receiver) == ["fired"]
    fired = receiver.received[0]["json"]
    record_id = last.record_ids[0]
    assert fired["subject"] == f"cursor:{cursor.pk}"
    assert fired["details"]["record_id"] == record_id and fired["details"]["invocation_id"] == last.pk
    links = fired["details"]["links"]
    assert links["record"].endswith(f"/records/{record_id}/")
    assert links["invocation"].endswith(f"/invocations/{last.pk}/")
    assert links["batch"].endswith(f"/triggers/cursors/{cursor.pk}/")
    page = owner.get(f"/triggers/cursors/{cursor.pk}/")
    assert b"Skip the batch to the dead-letter list" in page.content and f"/records/{record_id}/".encode() in page.content

    answer = owner.post(f"/triggers/cursors/{cursor.pk}/skip")

    assert answer.status_code == 302
    letter = DeadLetter.objects.get(trigger=trigger)
    assert letter.record_ids == [record_id] and "Skipped by owner after 3 retries" in letter.reason
    cursor.refresh_from_db()
    assert cursor.attempt == 0 and cursor.position == orders_table.records.get(pk=record_id).sequence_key
    twice(timezone.now())
    assert kinds(receiver) == ["fired", "resolved"]


def test_it_names_a_poison_records_error_type_never_the_handlers_message(orders_table, channels, receiver, inbox):
    orders_table.put("a", card="4111-1111-1111-1111")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_echoing_items", maximum_retry_attempts=-1)
    retry_rounds(trigger, 2)
    rule = rule_for(Rule.Condition.POISON_RECORD, channels.webhook, trigger=trigger, threshold=2)
    rule.channels.set(channels.all)
    last = Invocation.objects.filter(trigger=trigger).order_by("-id").first()
    assert "4111" in last.error_message

    twice(timezone.now())

    sent = [request["body"].decode() for request in receiver.received]
    sent += [message["message"].get_body(preferencelist=("plain",)).get_content() for message in inbox.messages]
    assert len(sent) == 3
    assert all("4111" not in text and "cannot ship" not in text for text in sent)
    fired = next(request["json"] for request in receiver.received if request["path"] == "/hook")
    assert "ValueError" in fired["summary"] and f"/invocations/{last.pk}/" in fired["summary"]


def test_it_bisects_a_retried_batch_from_the_alerts_link(orders_table, owner):
    trigger = poisoned(orders_table, ["a", "b", "c"])
    cursor = TriggerCursor.objects.get(trigger=trigger)

    owner.post(f"/triggers/cursors/{cursor.pk}/bisect")

    cursor.refresh_from_db()
    assert (cursor.batch_limit, cursor.attempt) == (1, 0)
    retry_rounds(trigger, 1)
    assert Invocation.objects.filter(trigger=trigger).order_by("-id").first().record_count == 1


def test_it_refuses_operator_actions_without_a_login_or_csrf_token(orders_table, client):
    from django.test import Client

    trigger = poisoned(orders_table, ["a"])
    cursor = TriggerCursor.objects.get(trigger=trigger)
    assert client.post(f"/triggers/cursors/{cursor.pk}/skip").status_code == 302  # to the login page
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(persona_user(name="op", role="Operator"))
    assert strict.post(f"/triggers/cursors/{cursor.pk}/skip").status_code == 403
    assert not DeadLetter.objects.filter(trigger=trigger).exists()


def test_it_alerts_when_no_worker_is_alive_and_a_live_reader_does_not_count_as_one(db, channels, receiver, settings):
    rule_for(Rule.Condition.NO_WORKER, channels.webhook, threshold=30)
    # A reader consumes only the readers' queue (the Procfile's `reader`): the streams are read,
    # but no trigger runs and no alert is sent.
    heartbeat_beat(process="reader@host:1", role=Heartbeat.Role.WORKER, queues=settings.SHARDWATCH_READER_QUEUE)

    twice(timezone.now())

    assert kinds(receiver) == ["fired"]
    fired = receiver.received[0]["json"]
    assert fired["subject"] == "role:worker"
    assert "No Celery worker has sent a heartbeat in the last 30 s: no trigger runs" in fired["summary"]

    heartbeat_beat(process="worker@host:2", role=Heartbeat.Role.WORKER, queues=settings.CELERY_TASK_DEFAULT_QUEUE)
    Heartbeat.objects.filter(process="reader@host:1").update(seen_at=timezone.now() - timedelta(seconds=60))
    twice(timezone.now())

    # The worker is back and the reader died: the reverse.
    assert kinds(receiver) == ["fired", "resolved", "fired"] or kinds(receiver) == ["fired", "fired", "resolved"]
    assert AlertState.objects.get(subject="role:worker").status == AlertState.Status.RESOLVED
    assert AlertState.objects.get(subject="role:reader").status == AlertState.Status.FIRING
    assert "No Celery reader has sent a heartbeat in the last 30 s: no stream is read" in AlertState.objects.get(
        subject="role:reader").summary


def test_it_alerts_on_source_lag_and_says_when_record_times_are_rounded(orders_table, channels, receiver):
    rule_for(Rule.Condition.SOURCE_LAG, channels.webhook, threshold=60)
    orders_table.put("a")
    orders_table.ingest()
    now = timezone.now()
    twice(now)
    assert kinds(receiver) == []

    # Nobody polls the shard for two minutes: the source is two minutes behind whatever its
    # stream holds.
    twice(now + timedelta(minutes=2))

    assert kinds(receiver) == ["fired"]
    fired = receiver.received[0]["json"]
    assert fired["details"]["lag_s"] > 60
    # DynamoDB Local rounds ApproximateCreationDateTime down to the minute.
    assert fired["details"]["rounded"] is True
    assert "rounded down to the minute" in fired["summary"]

    orders_table.ingest()
    twice(timezone.now())
    assert kinds(receiver) == ["fired", "resolved"]


def test_it_alerts_on_a_triggers_oldest_unprocessed_record(orders_table, channels, receiver):
    trigger = poisoned(orders_table, ["a"])
    rule_for(Rule.Condition.TRIGGER_AGE, channels.webhook, trigger=trigger, threshold=60)
    now = timezone.now()
    twice(now)
    assert kinds(receiver) == []

    twice(now + timedelta(minutes=2))

    assert kinds(receiver) == ["fired"]
    assert receiver.received[0]["json"]["details"]["iterator_age_s"] > 60

    cursor_batch_skip(cursor_id=TriggerCursor.objects.get(trigger=trigger).pk, who="test")
    twice(timezone.now() + timedelta(minutes=2))
    assert kinds(receiver) == ["fired", "resolved"]

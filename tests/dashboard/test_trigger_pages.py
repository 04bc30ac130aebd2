"""The trigger pages: list, live timeline, invocation detail, dead letters, and the record page's
invocations. Real data: items written to DynamoDB Local, read by the shard readers, sent by the
trigger runner to the Python handlers in tests/trigger_handlers.py."""

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from config.asgi import application
from streams.models import ChangeRecord
from tests.support.triggering import run_until_idle, trigger_for
from workers.models import DeadLetter, Invocation, Trigger
from workers.selectors import invocations_for_record, invocations_per_minute, trigger_lag
from workers.cursors import cursors_ensure
from tests.support.personas import persona_user

ORIGIN = (b"origin", b"http://localhost")
# The server as the tests reach it: Origin is checked against it (config/origins.py).
HOST = (b"host", b"localhost")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    ["/triggers/", "/triggers/timeline/", "/triggers/dead-letters/", "/invocations/1/"],
)
def test_it_sends_anonymous_visitors_to_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={url}"


@pytest.mark.django_db
def test_it_lists_triggers_with_lag_error_rate_and_dead_letters(owner, orders_table):
    for pk in ("a", "b"):
        orders_table.put(pk)
    orders_table.ingest()
    failing = trigger_for(orders_table, "fail_always", maximum_retry_attempts=1)
    run_until_idle(failing)
    healthy = trigger_for(orders_table, "record_batches")
    run_until_idle(healthy)
    orders_table.put("c")
    orders_table.ingest()  # not sent yet: both triggers lag by one record
    # The invocations belong to the last hour, even when a loaded machine took the steps above
    # across a minute boundary.
    Invocation.objects.update(started_at=timezone.now())

    response = owner.get(reverse("dashboard:triggers"))

    assert response.status_code == 200
    rows = {row["trigger"].name: row for row in response.context["triggers"]}
    assert rows["t-fail_always"]["lag"] == 1 and rows["t-record_batches"]["lag"] == 1
    assert rows["t-fail_always"]["error_percent"] == 100
    assert rows["t-record_batches"]["error_percent"] == 0
    assert rows["t-fail_always"]["dead_letters"] == 1
    assert rows["t-fail_always"]["invocations_last_hour"] == 2
    assert sum(rows["t-record_batches"]["per_minute"]) == 1
    body = response.content.decode()
    assert "100%" in body and "0%" in body
    assert reverse("admin:workers_trigger_change", args=[failing.pk]) in body
    assert f'data-chart="invocations" data-id="{failing.pk}"' in body
    assert f'data-series-url="{reverse("dashboard:api_trigger_series")}"' in body


@pytest.mark.django_db
def test_it_computes_lag_once_per_shard_for_the_admin_too(admin_client, orders_table):
    for pk in ("a", "b", "c"):
        orders_table.put(pk)
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches", parallelization_factor=2)
    cursors_ensure(trigger=trigger)

    assert trigger_lag(trigger=trigger) == 3
    response = admin_client.get(reverse("admin:workers_trigger_changelist"))
    assert response.status_code == 200
    assert '<td class="field-lag">3</td>' in response.content.decode()


@pytest.mark.django_db
def test_it_counts_invocations_per_minute_in_one_query(django_assert_num_queries, orders_table):
    trigger = trigger_for(orders_table, "record_batches")
    other = Trigger.objects.create(name="other", source=orders_table, target="python", handler="tests.handlers.triggers.record_batches")
    now = timezone.now().replace(second=30)
    for minutes_ago, target in [(0, trigger), (0, trigger), (5, trigger), (59, other), (61, other)]:
        Invocation.objects.create(
            trigger=target, first_sequence_number="1", last_sequence_number="1", record_count=1,
            outcome="success", started_at=now - timezone.timedelta(minutes=minutes_ago),
        )

    with django_assert_num_queries(1):
        counts = invocations_per_minute(now=now, trigger_ids=[trigger.pk, other.pk])

    assert counts[trigger.pk][-1] == 2 and counts[trigger.pk][-6] == 1 and sum(counts[trigger.pk]) == 3
    assert counts[other.pk][0] == 1 and sum(counts[other.pk]) == 1


@pytest.mark.django_db
def test_it_filters_the_timeline_by_outcome_and_trigger(owner, orders_table):
    orders_table.put("a")
    orders_table.ingest()
    failing = trigger_for(orders_table, "fail_always", maximum_retry_attempts=1)
    healthy = trigger_for(orders_table, "record_batches")
    run_until_idle(failing)
    run_until_idle(healthy)

    everything = owner.get(reverse("dashboard:timeline"))
    errors = owner.get(reverse("dashboard:timeline"), {"outcome": "function_error"})
    healthy_only = owner.get(reverse("dashboard:timeline"), {"trigger": healthy.pk})

    assert [i.outcome for i in everything.context["invocations"]] == ["success", "function_error", "function_error"]
    assert {i.outcome for i in errors.context["invocations"]} == {"function_error"}
    assert len(errors.context["invocations"]) == 2
    assert [i.trigger_id for i in healthy_only.context["invocations"]] == [healthy.pk]
    body = errors.content.decode()
    assert 'class="outcome outcome-function_error"' in body and "ValueError" in body
    assert 'class="outcome outcome-success"' not in body
    assert 'data-outcome="function_error"' in body and "js/timeline.js" in body


@pytest.mark.django_db
def test_it_returns_the_invocations_recorded_after_a_cursor(owner, orders_table):
    orders_table.put("a")
    orders_table.ingest()
    failing = trigger_for(orders_table, "fail_always", maximum_retry_attempts=1)
    healthy = trigger_for(orders_table, "record_batches")
    run_until_idle(failing)
    run_until_idle(healthy)
    ids = list(Invocation.objects.order_by("id").values_list("id", flat=True))

    after_first = owner.get("/api/invocations", {"since": ids[0]}).json()
    errors = owner.get("/api/invocations", {"outcome": "function_error", "limit": 1}).json()

    assert [row["id"] for row in after_first["invocations"]] == ids[1:]
    assert after_first["last_id"] == ids[-1] and after_first["more"] is False
    assert [row["trigger_name"] for row in after_first["invocations"]] == [failing.name, healthy.name]
    assert [row["id"] for row in errors["invocations"]] == ids[:1] and errors["more"] is True
    assert owner.get("/api/invocations", {"outcome": "nope"}).status_code == 400


@pytest.mark.django_db
def test_it_explains_a_bad_timeline_filter(owner):
    response = owner.get(reverse("dashboard:timeline"), {"outcome": "exploded"})
    assert response.status_code == 200
    assert response.context["invocations"] == []
    assert "outcome must be one of" in response.content.decode()


@pytest.mark.django_db
def test_it_shows_the_exact_payload_and_records_of_an_invocation(owner, orders_table):
    orders_table.put("a", status="NEW")
    orders_table.put("b", status="<script>alert(1)</script>")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=0)
    run_until_idle(trigger)
    invocation = Invocation.objects.get(trigger=trigger)
    records = list(ChangeRecord.objects.filter(source=orders_table).order_by("sequence_key"))

    response = owner.get(reverse("dashboard:invocation", args=[invocation.pk]))

    assert response.status_code == 200
    payload = json.loads(response.context["payload"])
    assert [r["eventSource"] for r in payload["Records"]] == ["aws:dynamodb", "aws:dynamodb"]
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in payload["Records"]] == ["a", "b"]
    assert [r["dynamodb"]["SequenceNumber"] for r in payload["Records"]] == [r.sequence_number for r in records]
    assert [row["id"] for row in response.context["records"]] == [r.pk for r in records]
    assert response.context["diffs"] == [{"id": r.pk, "diff": r.diff, "diff_complete": True} for r in records]
    assert {change["path"] for change in response.context["diffs"][1]["diff"]} == {"pk", "status"}
    body = response.content.decode()
    assert 'id="invocation-diffs"' in body and "js/invocation.js" in body
    assert "&quot;eventSource&quot;: &quot;aws:dynamodb&quot;" in body
    assert "<script>alert(1)</script>" not in body  # the item's value is escaped
    assert "ValueError" in body and "boom" in body
    for record in records:
        assert reverse("dashboard:record", args=[record.pk]) in body
    assert "exactly what was sent" in body


@pytest.mark.django_db
def test_it_lists_changes_for_at_most_the_first_records_of_a_big_invocation(owner, orders_table, monkeypatch):
    from dashboard import views

    monkeypatch.setattr(views, "INVOCATION_DIFFS_SHOWN", 1)
    orders_table.put("a", status="NEW")
    orders_table.put("b", status="NEW")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "record_batches")
    run_until_idle(trigger)
    invocation = Invocation.objects.get(trigger=trigger)

    response = owner.get(reverse("dashboard:invocation", args=[invocation.pk]))

    assert [entry["id"] for entry in response.context["diffs"]] == [invocation.record_ids[0]]
    assert len(response.context["records"]) == 2
    assert "Changes are listed for the first 1 records" in response.content.decode()


@pytest.mark.django_db
def test_it_lists_dead_letters_with_their_invocation(owner, orders_table):
    orders_table.put("a")
    orders_table.put("b")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=0)
    run_until_idle(trigger)
    letter = DeadLetter.objects.get(trigger=trigger)

    response = owner.get(reverse("dashboard:dead_letters"))
    filtered = owner.get(reverse("dashboard:dead_letters"), {"trigger": trigger.pk + 1000})

    assert response.status_code == 200
    body = response.content.decode()
    assert [d.pk for d in response.context["dead_letters"]] == [letter.pk]
    assert response.context["dead_letters"][0].record_count == 2
    assert "Retries exhausted" in body and letter.first_sequence_number in body
    assert reverse("dashboard:invocation", args=[letter.invocation_id]) in body
    assert letter.shard.shard_id in body
    assert filtered.context["dead_letters"] == [letter]  # an unknown trigger shows all


@pytest.mark.django_db
def test_it_lists_the_invocations_that_sent_a_record(owner, orders_table):
    orders_table.put("a")
    orders_table.put("b")
    orders_table.ingest()
    first, second = ChangeRecord.objects.filter(source=orders_table).order_by("sequence_key")
    trigger = trigger_for(orders_table, "record_batches", batch_size=1)
    run_until_idle(trigger)
    sent_first = Invocation.objects.get(trigger=trigger, record_ids=[first.pk])

    response = owner.get(reverse("dashboard:record", args=[first.pk]))

    assert [i.pk for i in response.context["invocations"]] == [sent_first.pk]
    assert [i.pk for i in invocations_for_record(record_id=first.pk)] == [sent_first.pk]
    body = response.content.decode()
    assert reverse("dashboard:invocation", args=[sent_first.pk]) in body
    assert "t-record_batches" in body
    assert invocations_for_record(record_id=second.pk)[0].record_ids == [second.pk]


@pytest.mark.django_db
def test_it_finds_a_records_invocations_by_scanning_where_json_contains_is_missing(monkeypatch, orders_table):
    trigger = trigger_for(orders_table, "record_batches")
    for ids in ([1, 2], [3], [2, 4]):
        Invocation.objects.create(trigger=trigger, first_sequence_number="1", last_sequence_number="1",
                                  record_count=len(ids), record_ids=ids, outcome="success")
    # SQLite's path, on this database: read the newest invocations and look in Python.
    monkeypatch.setattr(connection, "vendor", "sqlite")

    found = invocations_for_record(record_id=2)

    assert [i.record_ids for i in found] == [[2, 4], [1, 2]]
    assert [i.record_ids for i in invocations_for_record(record_id=2, limit=1)] == [[2, 4]]


@pytest.mark.django_db
def test_it_says_when_no_trigger_sent_a_record(owner, orders_table):
    orders_table.put("a")
    orders_table.ingest()
    record = ChangeRecord.objects.get(source=orders_table)

    response = owner.get(reverse("dashboard:record", args=[record.pk]))

    assert response.context["invocations"] == []
    assert "No trigger has sent this record." in response.content.decode()


@pytest.mark.django_db
def test_it_links_triggers_in_the_navigation(owner):
    response = owner.get(reverse("dashboard:overview"))
    assert f'href="{reverse("dashboard:triggers")}"' in response.content.decode()


# ---- the websocket ----------------------------------------------------------------------------


@pytest.fixture
def session_cookie():
    client = Client()
    client.force_login(persona_user(name="watcher", role="Viewer"))
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


@pytest.mark.django_db(transaction=True)
def test_it_refuses_an_anonymous_invocations_socket():
    async def attempt():
        communicator = WebsocketCommunicator(application, "/ws/invocations/", headers=[HOST, ORIGIN])
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    connected, code = async_to_sync(attempt)()
    assert not connected
    assert code == 4401


@pytest.mark.django_db(transaction=True)
def test_it_pushes_recorded_invocations_that_match_the_subscription(session_cookie, orders_table):
    orders_table.put("a")
    orders_table.ingest()
    failing = trigger_for(orders_table, "fail_always", maximum_retry_attempts=0)
    healthy = trigger_for(orders_table, "record_batches")

    async def connect_and_subscribe(filters):
        communicator = WebsocketCommunicator(application, "/ws/invocations/", headers=[HOST, ORIGIN, session_cookie])
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "subscribe", **filters})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
        return communicator

    async def receive(communicator, count):
        rows = []
        while len(rows) < count:
            rows += (await communicator.receive_json_from(timeout=5))["invocations"]
        return rows, await communicator.receive_nothing(timeout=0.3)

    def run_both():
        # The runner publishes from sync code once each transaction commits, as a worker does.
        run_until_idle(failing)
        run_until_idle(healthy)

    async def scenario():
        everything = await connect_and_subscribe({"trigger": None, "outcome": ""})
        successes = await connect_and_subscribe({"trigger": None, "outcome": "success"})
        try:
            await sync_to_async(run_both)()
            return await receive(everything, 2), await receive(successes, 1)
        finally:
            await everything.disconnect()
            await successes.disconnect()

    (all_rows, all_done), (success_rows, success_done) = async_to_sync(scenario)()

    assert [(row["trigger_id"], row["outcome"]) for row in all_rows] == [(failing.pk, "function_error"), (healthy.pk, "success")]
    assert all_rows[0]["error_type"] == "ValueError"
    assert [row["trigger_name"] for row in all_rows] == ["t-fail_always", "t-record_batches"]
    assert [row["trigger_id"] for row in success_rows] == [healthy.pk]
    assert all_done and success_done


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_bad_subscription(session_cookie):
    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/invocations/", headers=[HOST, ORIGIN, session_cookie])
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "subscribe", "outcome": "exploded"})
        reply = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return reply

    reply = async_to_sync(scenario)()
    assert reply["type"] == "error" and "outcome" in reply["message"]

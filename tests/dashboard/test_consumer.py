"""The live feed's websocket, through the whole ASGI application (origin check, session auth,
routing) and the real Redis channel layer."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from config.asgi import application
from streams.models import StreamSource
from tests.support.personas import persona_user

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")
# The server as the tests reach it: Origin is checked against it (config/origins.py).
HOST = (b"host", b"localhost")


@pytest.fixture
def session_cookie():
    client = Client()
    client.force_login(persona_user(name="watcher", role="Viewer"))
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


@pytest.fixture
def source():
    return StreamSource.objects.create(table_name="orders", region="us-east-1", key_schema=["pk"])


def row(record_id, source, *, event="INSERT", key="ORDER#1", paths=("status",)):
    return {
        "id": record_id, "source_id": source.pk, "table": source.table_name, "event_name": event,
        "key": f"pk={key}", "item_key": "{}", "partition_key": key, "summary": "", "diff_complete": True,
        "paths": list(paths), "approximate_creation_time": "2026-01-01T00:00:00+00:00",
        "sequence_number": str(record_id), "is_ttl_delete": False, "decode_error": "",
    }


async def publish(source, rows):
    await get_channel_layer().group_send(
        source.group_name, {"type": "records.batch", "source_id": source.pk, "records": rows, "last_id": rows[-1]["id"]}
    )


def connect(headers):
    async def attempt():
        communicator = WebsocketCommunicator(application, "/ws/feed/", headers=headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    return async_to_sync(attempt)()


def test_it_refuses_an_anonymous_socket():
    connected, code = connect([HOST, ORIGIN])
    assert not connected
    assert code == 4401


def test_it_refuses_a_socket_from_a_foreign_origin(session_cookie):
    connected, _ = connect([HOST, (b"origin", b"http://evil.example"), session_cookie])
    assert not connected


def test_it_pushes_only_the_rows_that_match_the_subscribed_filter(session_cookie, source):
    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/feed/", headers=[HOST, ORIGIN, session_cookie])
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "subscribe", "filter": {"event": ["MODIFY"], "path": "status"}})
        subscribed = await communicator.receive_json_from(timeout=5)
        await publish(source, [row(1, source), row(2, source, event="MODIFY"), row(3, source, event="MODIFY", paths=["tags"])])
        message = await communicator.receive_json_from(timeout=5)
        nothing_else = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return subscribed, message, nothing_else

    subscribed, message, nothing_else = async_to_sync(scenario)()
    assert subscribed == {"type": "subscribed", "filter": {
        "source": [], "event": ["MODIFY"], "key": "", "key_match": "equals", "path": "status", "q": "", "from": "", "to": "",
        "pattern": "",
    }}
    assert message["type"] == "records"
    assert [r["id"] for r in message["records"]] == [2]
    assert message["last_id"] == 3
    assert nothing_else


def test_it_explains_a_bad_filter_and_keeps_the_socket(session_cookie, source):
    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/feed/", headers=[HOST, ORIGIN, session_cookie])
        await communicator.connect()
        await communicator.send_json_to({"type": "subscribe", "filter": {"event": ["UPSERT"]}})
        error = await communicator.receive_json_from(timeout=5)
        await publish(source, [row(7, source)])
        still_live = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return error, still_live

    error, still_live = async_to_sync(scenario)()
    assert error["type"] == "error" and "INSERT, MODIFY or REMOVE" in error["message"]
    assert [r["id"] for r in still_live["records"]] == [7]


def test_it_only_listens_to_the_sources_a_filter_names(session_cookie, source):
    other = StreamSource.objects.create(table_name="users", region="us-east-1", key_schema=["pk"])

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/feed/", headers=[HOST, ORIGIN, session_cookie])
        await communicator.connect()
        await communicator.send_json_to({"type": "subscribe", "filter": {"source": [str(other.pk)]}})
        await communicator.receive_json_from(timeout=5)
        await publish(source, [row(1, source)])
        await publish(other, [row(2, other)])
        message = await communicator.receive_json_from(timeout=5)
        nothing_else = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return message, nothing_else

    message, nothing_else = async_to_sync(scenario)()
    assert [r["id"] for r in message["records"]] == [2]
    assert nothing_else


def test_it_pushes_saved_records_matching_free_text_end_to_end(session_cookie, make_table, dynamodb):
    from streams.sources import source_add
    from tests.support.readers import read_until_idle

    table = make_table(range_key=False)
    watched = source_add(table_name=table, region="us-east-1")

    def write_and_ingest():
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "note": {"S": "handle as FRAGILE"}})
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "b"}, "note": {"S": "sturdy"}})
        read_until_idle(source_id=watched.pk)  # commits, so the worker's push goes out

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/feed/", headers=[HOST, ORIGIN, session_cookie])
        await communicator.connect()
        await communicator.send_json_to({"type": "subscribe", "filter": {"q": "fragile"}})
        await communicator.receive_json_from(timeout=5)
        await sync_to_async(write_and_ingest)()
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return message

    message = async_to_sync(scenario)()
    assert [r["partition_key"] for r in message["records"]] == ["a"]


def test_it_keeps_an_idle_socket_open_past_the_redis_read_timeout(session_cookie, source):
    # redis-py 8 times a read out after 5 s by default, as long as channels_redis blocks
    # waiting for a message, which used to kill every consumer that sat idle that long.
    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/feed/", headers=[HOST, ORIGIN, session_cookie])
        await communicator.connect()
        idle = await communicator.receive_nothing(timeout=7)
        await publish(source, [row(1, source)])
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return idle, message

    idle, message = async_to_sync(scenario)()
    assert idle
    assert [r["id"] for r in message["records"]] == [1]


def test_it_pushes_saved_records_matching_an_event_pattern(session_cookie, make_table, dynamodb):
    from streams.sources import source_add
    from tests.support.readers import read_until_idle

    table = make_table(range_key=False)
    watched = source_add(table_name=table, region="us-east-1")
    pattern = '{"dynamodb": {"NewImage": {"note": {"S": [{"prefix": "handle"}]}}}}'

    def write_and_ingest():
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "note": {"S": "sturdy"}})
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "b"}, "note": {"S": "handle with care"}})
        read_until_idle(source_id=watched.pk)

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/feed/", headers=[HOST, ORIGIN, session_cookie])
        await communicator.connect()
        await communicator.send_json_to({"type": "subscribe", "filter": {"pattern": pattern}})
        subscribed = await communicator.receive_json_from(timeout=5)
        await sync_to_async(write_and_ingest)()
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return subscribed, message

    subscribed, message = async_to_sync(scenario)()
    assert subscribed["filter"]["pattern"] == pattern
    assert [r["partition_key"] for r in message["records"]] == ["b"]

import os
import uuid
from pathlib import Path

import boto3
import pytest

from streams import aws
from tests.support import dynamodb_local

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True)
def meters_unflushed_forgotten():
    """Each test counts from nothing: what earlier tests counted in this process and never
    flushed would otherwise land in this test's database at its first meters_flush()."""
    from meters.store import meters_forget

    meters_forget()
    yield


@pytest.fixture
def owner(client):
    """Who runs the dashboard, logged in: staff in the Admin role, as an upgrade makes the staff
    that configured sources or triggers before roles (dashboard/migrations/0001_roles.py); not a
    superuser."""
    from tests.support.personas import persona_user

    client.force_login(persona_user(name="owner", role="Admin", is_staff=True))
    return client


# The personas (tests/support/personas.py), each a client of its own, logged in.
@pytest.fixture
def viewer(db):
    from tests.support.personas import persona_client

    return persona_client(name="viewer")


@pytest.fixture
def operator(db):
    from tests.support.personas import persona_client

    return persona_client(name="operator")


@pytest.fixture
def admin(db):
    from tests.support.personas import persona_client

    return persona_client(name="admin")


@pytest.fixture
def outsider(db):
    """Logged in, in no role."""
    from tests.support.personas import persona_client

    return persona_client(name="outsider")


@pytest.fixture
def anonymous():
    from django.test import Client

    return Client()


@pytest.fixture(scope="session")
def dynamodb_endpoint():
    """A real DynamoDB Local for the whole session, reached through boto3's standard
    endpoint variables exactly as a deployment would configure them."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = dynamodb_local.free_port()
    process = dynamodb_local.start(port=port, log_path=ARTIFACTS / "dynamodb-local.log")
    previous = {name: os.environ.get(name) for name in dynamodb_local.environment(port)}
    os.environ.update(dynamodb_local.environment(port))
    aws.forget_clients()
    yield f"http://127.0.0.1:{port}"
    dynamodb_local.stop(process)
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    aws.forget_clients()


@pytest.fixture
def fake_streams_server(monkeypatch):
    """The fake Streams API (tests/support/fake_streams.py) served over HTTP on a free port, for
    real boto3 clients where DynamoDB Local cannot play the part (many shards, lineage,
    throttling). `.url` is the endpoint; `.fake` the FakeStreams it serves, with no shards until
    the test adds some or puts another in its place; `.latency_s` is added to every call."""
    from tests.support.fake_streams import FakeStreams
    from tests.support.fake_streams_server import FakeStreamsServer

    # boto3 signs every request; the fake checks no signature, but some credentials must exist.
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "shardwatchtest")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shardwatchtest")
    server = FakeStreamsServer(FakeStreams([])).start()
    yield server
    server.stop()
    aws.forget_clients()


@pytest.fixture
def dynamodb(dynamodb_endpoint):
    return boto3.client("dynamodb")


@pytest.fixture
def make_table(dynamodb):
    """Create a table with a stream; returns its name. Names are unique per call, so tests
    share one DynamoDB Local without seeing each other's data."""

    def make(*, view_type="NEW_AND_OLD_IMAGES", range_key=True, stream=True, prefix="t"):
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
        attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
        if range_key:
            schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
            attributes.append({"AttributeName": "sk", "AttributeType": "N"})
        kwargs = {}
        if stream:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view_type}
        dynamodb.create_table(
            TableName=name,
            KeySchema=schema,
            AttributeDefinitions=attributes,
            BillingMode="PAY_PER_REQUEST",
            **kwargs,
        )
        return name

    return make


@pytest.fixture(autouse=True)
def handler_log_dir(tmp_path_factory, monkeypatch):
    """A directory of its own for what this test's handlers note (tests/handler_log.py), and
    cold handler hosts: every test starts them afresh, with this environment and no module
    state left by an earlier test."""
    from tests.support import handler_log
    from workers.targets.python import handler_hosts_stop

    directory = tmp_path_factory.mktemp("handler-log")
    monkeypatch.setenv(handler_log.ENV, str(directory))
    handler_hosts_stop()
    yield directory
    handler_hosts_stop()


@pytest.fixture
def orders_table(make_table, dynamodb):
    """A watched table: `orders_table.put(pk, **string_attributes)` writes, `orders_table.ingest()` reads
    the stream into the database as the readers would."""
    from streams.sources import source_add
    from tests.support.readers import read_until_idle

    table = make_table(range_key=False, prefix="orders")
    source = source_add(table_name=table, region="us-east-1")

    def put(pk, **attributes):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": pk}, **{k: {"S": v} for k, v in attributes.items()}})

    source.put = put
    source.ingest = lambda: read_until_idle(source_id=source.pk)
    return source


@pytest.fixture
def fake_source():
    """`fake_source(fake)`: a source read from the fake Streams API `fake`
    (tests/support/fake_streams.py), which may send what DynamoDB Local will not (many shards,
    splits, values no DynamoDB sends); the client is forgotten after the test."""
    from streams import aws
    from tests.support.fake_sources import fake_source_create

    yield fake_source_create
    aws.forget_clients()

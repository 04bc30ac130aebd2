"""The other consumers of a stream: discovery asks Lambda for the stream's event source mappings
(ListEventSourceMappings) every few minutes, stores them on the Stream row, and the Streams page
and /api/sources show them, warning when three or more processes read each shard.

The tables, functions and mappings are moto's, in server mode (tests/support/moto_aws.py): a
source on moto's DynamoDB is discovered through its endpoint_url, and Lambda is reached through
boto3's AWS_ENDPOINT_URL_LAMBDA, as a deployment would point at AWS. moto's Lambda answers every
mapping in one response (it ignores MaxItems and Marker), so paging past Lambda's 100 a response
is tested against a small server speaking ListEventSourceMappings' wire format; so is the
AccessDeniedException as Lambda itself shapes it.
"""

import json
import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from django.utils import timezone

from streams import aws
from streams.consumers import stream_consumers_refresh
from streams.models import Shard, Stream, StreamSource
from streams.sources import source_add, source_discover
from tests.support.dynamodb_local import free_port
from tests.support.http_servers import QuietHandler, http_server
from tests.support.moto_aws import iam_enforced, iam_user_create, lambda_function_create, moto_api, moto_server
from tests.support.readers import read_until_idle

pytestmark = pytest.mark.django_db

API = "/api/sources"
REGION = "us-east-1"
INTERVAL = timedelta(seconds=300)  # SHARDWATCH_CONSUMERS_INTERVAL_S's default


@pytest.fixture(scope="module")
def moto_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def moto(moto_endpoint, monkeypatch):
    """An empty moto, with Lambda at AWS_ENDPOINT_URL_LAMBDA and credentials of its own account
    (moto takes any while it does not enforce IAM)."""
    moto_api(moto_endpoint, "reset", {})
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", moto_endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "shardwatchtest")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shardwatchtest")
    aws.forget_clients()
    yield moto_endpoint
    aws.forget_clients()


def moto_table(endpoint: str, name: str) -> str:
    """A table with a stream in moto's DynamoDB; returns the stream's ARN."""
    table = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return table["TableDescription"]["LatestStreamArn"]


def mapping_create(endpoint: str, stream_arn: str, function: str, **settings) -> str:
    """An event source mapping from the stream to a new function; returns its UUID."""
    lambda_function_create(endpoint, function, region=REGION)
    client = boto3.client("lambda", endpoint_url=endpoint, region_name=REGION)
    return client.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=function, **settings)["UUID"]


def mapping_set_enabled(endpoint: str, uuid: str, enabled: bool) -> None:
    boto3.client("lambda", endpoint_url=endpoint, region_name=REGION).update_event_source_mapping(
        UUID=uuid, Enabled=enabled
    )


def watched(endpoint: str, name: str = "orders") -> tuple[StreamSource, str]:
    """moto's table `name`, watched by Shardwatch (not yet discovered); returns the source and
    its stream's ARN."""
    stream_arn = moto_table(endpoint, name)
    return source_add(table_name=name, region=REGION, endpoint_url=endpoint), stream_arn


def the_stream(source: StreamSource) -> Stream:
    return Stream.objects.get(source=source)


def page_of(owner, source: StreamSource) -> tuple[dict, str]:
    """The stream's "consumers" in /api/sources, and the text of its consumers on the page."""
    [entry] = [entry for entry in owner.get(API).json()["sources"] if entry["id"] == source.pk]
    [stream] = entry["streams"]
    html = owner.get("/").content.decode()
    start = html.index('<div class="consumers">', html.index(f'data-key="stream-{stream["id"]}"'))
    depth = 0
    for tag in re.finditer(r"<(/?)div\b", html[start:]):
        depth += -1 if tag.group(1) else 1
        if depth == 0:
            block = html[start : start + tag.start()]
            break
    text = re.sub(r"<[^>]+>", " ", block)
    text = re.sub(r"\s+([).,:])", r"\1", re.sub(r"\s+", " ", text)).strip()
    return stream["consumers"], text


def test_it_lists_the_event_source_mappings_of_the_stream(moto, owner):
    source, stream_arn = watched(moto)
    audit = mapping_create(moto, stream_arn, "orders-audit", BatchSize=50, StartingPosition="LATEST")
    paused = mapping_create(moto, stream_arn, "orders-paused", StartingPosition="TRIM_HORIZON", Enabled=False)
    mapping_create(moto, moto_table(moto, "invoices"), "invoices-audit", StartingPosition="LATEST")

    source_discover(source_id=source.pk)

    stream = the_stream(source)
    assert stream.arn == stream_arn
    assert stream.lambda_mappings_lookup == Stream.MappingsLookup.LISTED
    assert stream.lambda_mappings_checked_at is not None
    assert stream.lambda_mappings_error == ""
    by_uuid = {mapping["uuid"]: mapping for mapping in stream.lambda_mappings}
    assert set(by_uuid) == {audit, paused}  # not the other table's
    assert by_uuid[audit] == {
        "uuid": audit,
        "function_arn": f"arn:aws:lambda:{REGION}:123456789012:function:orders-audit",
        "state": "Enabled",
        "batch_size": 50,
        "starting_position": "LATEST",
        "last_modified": by_uuid[audit]["last_modified"],
    }
    assert timezone.now() - datetime.fromisoformat(by_uuid[audit]["last_modified"]) < timedelta(minutes=5)
    assert (by_uuid[paused]["state"], by_uuid[paused]["batch_size"]) == ("Disabled", 100)

    consumers, text = page_of(owner, source)
    assert consumers["lookup"] == "listed"
    assert (consumers["readers_per_shard"], consumers["mappings_reading"], consumers["too_many"]) == (2, 1, False)
    assert {(m["function_name"], m["state"], m["reads"]) for m in consumers["mappings"]} == {
        ("orders-audit", "Enabled", True),
        ("orders-paused", "Disabled", False),
    }
    assert "Readers per shard: 2 (Shardwatch and 1 event source mapping)" in text
    assert "orders-audit Enabled batch size 50 starts at LATEST changed" in text
    assert "orders-paused Disabled does not read batch size 100 starts at TRIM_HORIZON" in text
    assert "processes read each shard" not in text


def test_it_warns_at_three_readers_per_shard_and_not_at_two(moto, owner):
    source, stream_arn = watched(moto)
    mapping_create(moto, stream_arn, "orders-audit", StartingPosition="LATEST")
    search = mapping_create(moto, stream_arn, "orders-search-index", StartingPosition="LATEST")
    source_discover(source_id=source.pk)

    three, text = page_of(owner, source)

    assert (three["readers_per_shard"], three["too_many"]) == (3, True)
    assert sorted(three["reading_functions"]) == ["orders-audit", "orders-search-index"]
    assert "Readers per shard: 3 (Shardwatch and 2 event source mappings)" in text
    assert "3 processes read each shard of this stream" in text
    assert re.search(r"these Lambda event source mappings read it: orders-(audit, orders-search-index|search-index, orders-audit)\.", text)
    assert "Keep at most one event source mapping on a stream that Shardwatch watches" in text

    mapping_set_enabled(moto, search, False)
    assert stream_consumers_refresh(stream_id=the_stream(source).pk, now=timezone.now() + INTERVAL)

    two, text = page_of(owner, source)
    assert (two["readers_per_shard"], two["too_many"], two["reading_functions"]) == (2, False, ["orders-audit"])
    assert "Readers per shard: 2 (Shardwatch and 1 event source mapping)" in text
    assert "processes read each shard" not in text


def test_it_looks_up_each_stream_no_more_often_than_the_interval(moto):
    source, stream_arn = watched(moto)
    mapping_create(moto, stream_arn, "orders-audit", StartingPosition="LATEST")
    source_discover(source_id=source.pk)
    first = the_stream(source)
    mapping_create(moto, stream_arn, "orders-late", StartingPosition="LATEST")

    source_discover(source_id=source.pk)
    soon = stream_consumers_refresh(stream_id=first.pk, now=first.lambda_mappings_checked_at + INTERVAL - timedelta(seconds=1))

    assert soon is False
    assert the_stream(source).lambda_mappings == first.lambda_mappings
    assert the_stream(source).lambda_mappings_checked_at == first.lambda_mappings_checked_at

    later = first.lambda_mappings_checked_at + INTERVAL
    assert stream_consumers_refresh(stream_id=first.pk, now=later) is True
    stream = the_stream(source)
    assert len(stream.lambda_mappings) == 2
    assert stream.lambda_mappings_checked_at == later


def test_it_says_the_count_is_unknown_when_the_identity_lacks_the_permission(moto, owner, monkeypatch):
    """moto enforces IAM here: Shardwatch's identity may do everything in DynamoDB, and nothing
    in Lambda, and moto's policy evaluation denies the call. Granting the permission afterwards
    shows that it was the policy that denied it."""
    stream_arn = moto_table(moto, "orders")
    mapping_create(moto, stream_arn, "orders-audit", StartingPosition="LATEST")
    for name, value in iam_user_create(moto, name="shardwatch", actions=["dynamodb:*"]).items():
        monkeypatch.setenv(name, value)
    aws.forget_clients()

    with iam_enforced(moto):
        source = source_add(table_name="orders", region=REGION, endpoint_url=moto)
        source_discover(source_id=source.pk)

    stream = the_stream(source)
    assert stream.lambda_mappings_lookup == Stream.MappingsLookup.DENIED
    assert "user/shardwatch is not authorized to perform: lambda:ListEventSourceMappings" in stream.lambda_mappings_error
    assert stream.lambda_mappings == []
    # Discovery went on: the stream's shards were found and the source is healthy.
    assert Shard.objects.filter(stream=stream).exists()
    source.refresh_from_db()
    assert (source.status, source.last_error) == (StreamSource.Status.ACTIVE, "")
    consumers, text = page_of(owner, source)
    assert (consumers["readers_per_shard"], consumers["too_many"], consumers["mappings"]) == (None, False, [])
    assert consumers["lookup_display"] == "unknown: the identity lacks lambda:ListEventSourceMappings"
    assert "Readers per shard: unknown: the identity lacks lambda:ListEventSourceMappings looked up" in text
    assert "is not authorized to perform: lambda:ListEventSourceMappings" in text

    boto3.client("iam", endpoint_url=moto, region_name=REGION).put_user_policy(
        UserName="shardwatch",
        PolicyName="event-source-mappings",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:ListEventSourceMappings", "Resource": "*"}]}
        ),
    )
    with iam_enforced(moto):
        stream_consumers_refresh(stream_id=stream.pk, now=timezone.now() + INTERVAL)

    assert the_stream(source).lambda_mappings_lookup == Stream.MappingsLookup.LISTED
    assert page_of(owner, source)[0]["readers_per_shard"] == 2


def test_it_says_the_count_is_unknown_when_lambda_cannot_be_reached(moto, owner, monkeypatch):
    source, _ = watched(moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{free_port()}")
    boto3.client("dynamodb", endpoint_url=moto, region_name=REGION).put_item(
        TableName="orders", Item={"pk": {"S": "order-1"}}
    )

    # Discovery, then the readers, as the workers run them.
    assert read_until_idle(source_id=source.pk) == 1

    stream = the_stream(source)
    assert stream.lambda_mappings_lookup == Stream.MappingsLookup.UNREACHABLE
    assert stream.lambda_mappings_error.startswith("EndpointConnectionError: ")
    assert Shard.objects.filter(stream=stream).exists()
    source.refresh_from_db()
    assert source.status == StreamSource.Status.ACTIVE and source.last_discovered_at is not None
    consumers, text = page_of(owner, source)
    assert consumers["readers_per_shard"] is None
    assert "Readers per shard: unknown: the Lambda endpoint could not be reached" in text


def test_it_does_not_ask_lambda_about_a_stream_of_dynamodb_local(make_table, owner, monkeypatch):
    # Were Lambda asked, this endpoint would answer nothing and the look-up would say so.
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{free_port()}")
    aws.forget_clients()
    source = source_add(table_name=make_table(range_key=False), region=REGION)

    source_discover(source_id=source.pk)

    stream = the_stream(source)
    assert stream.arn.split(":")[3:5] == ["ddblocal", "000000000000"]
    assert stream.lambda_mappings_lookup == Stream.MappingsLookup.NO_LAMBDA
    assert (stream.lambda_mappings, stream.lambda_mappings_error) == ([], "")
    consumers, text = page_of(owner, source)
    assert (consumers["readers_per_shard"], consumers["too_many"], consumers["checked_at"]) == (1, False, None)
    assert text.startswith("Readers per shard: 1 (Shardwatch) Event source mappings")
    assert "Event source mappings not looked up: DynamoDB Local has no Lambda." in text


def test_it_shows_a_stream_not_looked_up_yet(owner):
    source = StreamSource.objects.create(table_name="orders", region=REGION, status=StreamSource.Status.ACTIVE)
    Stream.objects.create(source=source, arn=f"arn:aws:dynamodb:{REGION}:123456789012:table/orders/stream/1")

    consumers, text = page_of(owner, source)

    assert (consumers["lookup"], consumers["readers_per_shard"], consumers["checked_at"]) == ("", None, None)
    assert text.startswith("Readers per shard: unknown: not looked up yet")
    assert "looked up " not in text.replace("not looked up yet", "")


class ListEventSourceMappingsApi(QuietHandler):
    """Lambda's ListEventSourceMappings at the network edge: GET
    /2015-03-31/event-source-mappings?EventSourceArn=...&Marker=..., answered a page at a time
    with NextMarker as the service does, or refused as it refuses an identity without
    lambda:ListEventSourceMappings (403, x-amzn-ErrorType: AccessDeniedException)."""

    def do_GET(self):
        url = urlparse(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        self.server.requests.append({"path": url.path, "query": query})
        if self.server.mode == "denied":
            message = (
                "User: arn:aws:sts::123456789012:assumed-role/shardwatch/i-0abc is not authorized to perform: "
                "lambda:ListEventSourceMappings because no identity-based policy allows the "
                "lambda:ListEventSourceMappings action"
            )
            return self.answer_json(403, {"Type": "User", "Message": message}, {"x-amzn-ErrorType": "AccessDeniedException"})
        page = int(query.get("Marker", "0"))
        mappings = [self.mapping(query["EventSourceArn"], number) for number in range(page * 100, min(page * 100 + 100, 130))]
        document = {"EventSourceMappings": mappings}
        if page == 0:
            document["NextMarker"] = "1"
        return self.answer_json(200, document)

    @staticmethod
    def mapping(stream_arn: str, number: int) -> dict:
        return {
            "UUID": f"00000000-0000-0000-0000-{number:012d}",
            "EventSourceArn": stream_arn,
            "FunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:fn-{number}:live",
            "State": "Enabled" if number == 129 else "Disabled",
            "BatchSize": 100,
            "StartingPosition": "TRIM_HORIZON",
            "LastModified": 1795000000.5,
            "StateTransitionReason": "USER_INITIATED",
        }



@pytest.fixture
def lambda_api(monkeypatch):
    with http_server(ListEventSourceMappingsApi, mode="pages", requests=[]) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "shardwatchtest")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shardwatchtest")
        aws.forget_clients()
        yield server
    aws.forget_clients()


def aws_stream() -> Stream:
    source = StreamSource.objects.create(table_name="orders", region=REGION, status=StreamSource.Status.ACTIVE)
    return Stream.objects.create(source=source, arn=f"arn:aws:dynamodb:{REGION}:123456789012:table/orders/stream/1")


def test_it_follows_next_marker_past_one_page_of_mappings(lambda_api, owner):
    stream = aws_stream()

    assert stream_consumers_refresh(stream_id=stream.pk) is True

    stream.refresh_from_db()
    assert [mapping["uuid"][-3:] for mapping in stream.lambda_mappings] == [f"{n:03d}" for n in range(130)]
    assert stream.lambda_mappings[129]["last_modified"] == "2026-11-18T11:06:40.500000+00:00"
    first, second = lambda_api.requests
    assert first == {"path": "/2015-03-31/event-source-mappings", "query": {"EventSourceArn": stream.arn}}
    assert second["query"] == {"EventSourceArn": stream.arn, "Marker": "1"}
    consumers, _ = page_of(owner, stream.source)
    assert (consumers["readers_per_shard"], consumers["reading_functions"]) == (2, ["fn-129:live"])


def test_it_reads_lambdas_access_denied_answer_as_the_permission_missing(lambda_api, owner):
    lambda_api.mode = "denied"
    stream = aws_stream()

    stream_consumers_refresh(stream_id=stream.pk)

    stream.refresh_from_db()
    assert stream.lambda_mappings_lookup == Stream.MappingsLookup.DENIED
    assert stream.lambda_mappings_error.startswith("AccessDeniedException: User: arn:aws:sts::123456789012:")
    assert len(lambda_api.requests) == 1

"""The fake Streams endpoint (tests/support/fake_streams_server.py), through real boto3 clients
over HTTP: what benchmarks and lineage tests rely on it to do. DynamoDB Local has one shard
per stream and never throttles, so these are the fake's to play.
"""

import signal
import subprocess
import sys
import threading
import time
import types
import urllib.request

import boto3
import botocore.config
import orjson
import pytest
from botocore.exceptions import ClientError

from tests.support.dynamodb_local import ROOT
from tests.support.fake_streams import ARN, IGNORED, FakeShard, FakeStreams, aws_error

# One attempt: these tests look at what the endpoint answers, not at botocore's retries.
ONCE = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})


def streams_client(server):
    return boto3.client("dynamodbstreams", region_name="us-east-1", endpoint_url=server.url, config=ONCE)


def iterator_at(client, shard_id: str, kind: str) -> str:
    return client.get_shard_iterator(StreamArn=ARN, ShardId=shard_id, ShardIteratorType=kind)["ShardIterator"]


def all_shards(client) -> tuple[list[dict], int]:
    shards, pages, kwargs = [], 0, {"StreamArn": ARN}
    while True:
        description = client.describe_stream(**kwargs)["StreamDescription"]
        shards += description["Shards"]
        pages += 1
        if "LastEvaluatedShardId" not in description:
            return shards, pages
        kwargs["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]


def control(server, path, body=None):
    request = urllib.request.Request(server.url + path, data=None if body is None else orjson.dumps(body))
    with urllib.request.urlopen(request) as response:
        return orjson.loads(response.read())


def error_of(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_it_pages_describe_stream_past_a_hundred_shards_with_their_lineage(fake_streams_server):
    fake_streams_server.fake = FakeStreams.generated(open_shards=600, closed_generations=1, records_per_shard=2)

    shards, pages = all_shards(streams_client(fake_streams_server))

    assert len(shards) == 1200 and len({shard["ShardId"] for shard in shards}) == 1200
    assert pages == 12
    closed = [shard for shard in shards if "EndingSequenceNumber" in shard["SequenceNumberRange"]]
    children = [shard for shard in shards if "ParentShardId" in shard]
    assert len(closed) == 600 and len(children) == 600
    assert {shard["ParentShardId"] for shard in children} == {shard["ShardId"] for shard in closed}


def test_it_answers_a_shards_children_for_shard_filter_child_shards(fake_streams_server):
    fake = fake_streams_server.fake = FakeStreams.generated(open_shards=150)
    parent = list(fake.shards)[120]
    left, right = fake.split(parent)
    client = streams_client(fake_streams_server)

    children = client.describe_stream(StreamArn=ARN, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": parent})

    assert [shard["ShardId"] for shard in children["StreamDescription"]["Shards"]] == [left.shard_id, right.shard_id]
    assert {shard["ParentShardId"] for shard in children["StreamDescription"]["Shards"]} == {parent}
    assert "LastEvaluatedShardId" not in children["StreamDescription"]
    listed = {shard["ShardId"]: shard for shard in all_shards(client)[0]}
    assert "EndingSequenceNumber" in listed[parent]["SequenceNumberRange"]


def test_it_refuses_shard_filter_with_exclusive_start_shard_id_as_dynamodb_local_does(fake_streams_server):
    fake = fake_streams_server.fake = FakeStreams.generated(open_shards=3)
    first, second, _ = fake.shards
    client = streams_client(fake_streams_server)

    code, status = error_of(lambda: client.describe_stream(
        StreamArn=ARN, ExclusiveStartShardId=first, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": second}
    ))

    assert (code, status) == ("ValidationException", 400)


def test_it_ignores_shard_filter_when_switched_off_and_answers_the_full_listing(fake_streams_server):
    fake = fake_streams_server.fake = FakeStreams.generated(open_shards=150, child_shards_filter=IGNORED)
    parent = list(fake.shards)[0]
    fake.split(parent)

    answer = streams_client(fake_streams_server).describe_stream(
        StreamArn=ARN, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": parent}
    )["StreamDescription"]

    assert len(answer["Shards"]) == 100
    assert answer["Shards"][0]["ShardId"] == parent
    assert answer["LastEvaluatedShardId"] == answer["Shards"][-1]["ShardId"]


def test_it_throttles_a_shard_read_more_than_five_times_a_second(fake_streams_server):
    fake = fake_streams_server.fake = FakeStreams.generated(open_shards=2, throttle_per_shard_s=5)
    now = [100.0]
    fake.clock = lambda: now[0]
    busy, quiet = fake.shards
    client = streams_client(fake_streams_server)
    iterator = {
        shard_id: iterator_at(client, shard_id, "LATEST") for shard_id in fake.shards
    }

    for _ in range(5):
        client.get_records(ShardIterator=iterator[busy])
        now[0] += 0.1
    sixth = error_of(lambda: client.get_records(ShardIterator=iterator[busy]))
    other_shard = client.get_records(ShardIterator=iterator[quiet])
    now[0] += 0.6  # a second after the first read
    after_a_second = client.get_records(ShardIterator=iterator[busy])

    assert sixth == ("LimitExceededException", 400)
    assert "NextShardIterator" in other_shard and "NextShardIterator" in after_a_second
    assert fake.throttled == 1


def test_it_adds_latency_to_every_call_without_serving_them_one_after_another(fake_streams_server):
    fake = fake_streams_server.fake = FakeStreams.generated(open_shards=1)
    fake_streams_server.latency_s = 0.3
    clients = [streams_client(fake_streams_server) for _ in range(4)]
    took = []

    def describe(client):
        started = time.monotonic()
        client.describe_stream(StreamArn=ARN)
        took.append(time.monotonic() - started)

    started = time.monotonic()
    threads = [threading.Thread(target=describe, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    overall = time.monotonic() - started

    assert len(took) == 4 and min(took) >= 0.3
    assert overall < 0.3 * 3  # four calls at once, not 1.2 s in a row


def test_it_serves_records_written_while_a_reader_holds_its_iterator(fake_streams_server):
    fake = fake_streams_server.fake = FakeStreams.generated(open_shards=2, records_per_shard=1)
    first, second = fake.shards
    client = streams_client(fake_streams_server)
    iterator = iterator_at(client, first, "TRIM_HORIZON")
    before = client.get_records(ShardIterator=iterator)

    written = control(fake_streams_server, "/_fake/records", {"shard_id": first, "count": 3})
    everywhere = control(fake_streams_server, "/_fake/records", {"count": 2})
    after = client.get_records(ShardIterator=before["NextShardIterator"])

    numbers = [record["dynamodb"]["SequenceNumber"] for record in before["Records"] + after["Records"]]
    assert len(before["Records"]) == 1 and len(after["Records"]) == 5
    assert numbers == sorted(numbers) and len(set(numbers)) == 6
    assert written["written"] == 3 and everywhere["written"] == 4
    assert len(fake.shards[second].records) == 3
    # Stamped now, so that iterator age means something to the reader.
    assert time.time() - after["Records"][-1]["dynamodb"]["ApproximateCreationDateTime"].timestamp() < 60


def test_it_ends_a_split_shard_at_its_last_record_and_reads_on_in_its_children(fake_streams_server):
    fake = fake_streams_server.fake = FakeStreams.generated(open_shards=1, records_per_shard=2)
    [parent] = fake.shards
    client = streams_client(fake_streams_server)
    iterator = iterator_at(client, parent, "TRIM_HORIZON")
    open_read = client.get_records(ShardIterator=iterator)

    children = control(fake_streams_server, "/_fake/split", {"shard_id": parent})["children"]
    fake.records_append(shard_id=children[0], count=1)
    closed_read = client.get_records(ShardIterator=open_read["NextShardIterator"])
    child_read = client.get_records(ShardIterator=iterator_at(client, children[0], "TRIM_HORIZON"))

    assert len(open_read["Records"]) == 2 and "NextShardIterator" in open_read
    assert closed_read["Records"] == [] and "NextShardIterator" not in closed_read
    [child_record] = child_read["Records"]
    assert child_record["dynamodb"]["SequenceNumber"] > open_read["Records"][-1]["dynamodb"]["SequenceNumber"]
    with pytest.raises(ValueError, match="closed"):
        fake.records_append(shard_id=parent, count=1)


def test_it_answers_errors_with_the_codes_and_statuses_aws_sends(fake_streams_server):
    fake = fake_streams_server.fake = FakeStreams([FakeShard("shardId-00000001767225600000-00000001")])
    client = streams_client(fake_streams_server)
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=fake_streams_server.url, config=ONCE)
    fake.errors["GetRecords"] = [aws_error("InternalServerError", "GetRecords")]

    assert error_of(lambda: client.get_shard_iterator(
        StreamArn=ARN, ShardId="shardId-00000000000000000000-deadbeef", ShardIteratorType="LATEST"
    )) == ("ResourceNotFoundException", 400)
    assert error_of(lambda: client.describe_stream(StreamArn=ARN.replace("fake", "other"))) == (
        "ResourceNotFoundException", 400
    )
    assert error_of(lambda: dynamodb.describe_table(TableName="other")) == ("ResourceNotFoundException", 400)
    iterator = iterator_at(client, "shardId-00000001767225600000-00000001", "TRIM_HORIZON")
    assert error_of(lambda: client.get_records(ShardIterator=iterator)) == ("InternalServerError", 500)
    assert dynamodb.describe_table(TableName="fake")["Table"]["LatestStreamArn"] == ARN


def test_it_reports_its_cpu_time_and_takes_new_settings_while_it_runs(fake_streams_server):
    fake = fake_streams_server.fake = FakeStreams.generated(open_shards=4, closed_generations=1)
    streams_client(fake_streams_server).describe_stream(StreamArn=ARN)

    changed = {"latency_ms": 5, "throttle_per_shard_s": 2, "child_shards_filter": "ignored"}
    settings = control(fake_streams_server, "/_fake/config", changed)
    stats = control(fake_streams_server, "/_fake/stats")

    assert settings == {"latency_ms": 5.0, "throttle_per_shard_s": 2, "child_shards_filter": "ignored"}
    assert (fake_streams_server.latency_s, fake.throttle_per_shard_s, fake.child_shards_filter) == (0.005, 2, "ignored")
    assert stats["requests"] == {"DescribeStream": 1}
    assert stats["shards"] == 8 and stats["open_shards"] == 4
    assert stats["process_time_s"] > 0


def test_it_runs_as_a_process_of_its_own_that_a_benchmark_feeds_while_it_runs(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "shardwatchtest")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shardwatchtest")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_streams_server", "--shards", "120", "--closed-generations", "1",
         "--latency-ms", "1", "--no-child-shards-filter"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        server = types.SimpleNamespace(url=process.stdout.readline().strip())
        client = streams_client(server)
        shards, pages = all_shards(client)
        leaf = shards[-1]["ShardId"]
        control(server, "/_fake/records", {"shard_id": leaf, "count": 4})
        records = client.get_records(ShardIterator=iterator_at(client, leaf, "TRIM_HORIZON"))["Records"]
        ignored = client.describe_stream(StreamArn=ARN, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": leaf})
        stats = control(server, "/_fake/stats")
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(10)

    assert (len(shards), pages) == (240, 3)
    assert len(records) == 4
    assert len(ignored["StreamDescription"]["Shards"]) == 100  # the full listing's first page
    assert stats["requests"]["GetRecords"] == 1 and stats["open_shards"] == 120
    assert exit_code == 0
    assert "240 shards" in process.stderr.read()


def test_it_times_the_intervals_between_get_records_on_each_shard(fake_streams_server):
    fake_streams_server.fake = FakeStreams.generated(open_shards=2)
    client = streams_client(fake_streams_server)
    first, second = list(fake_streams_server.fake.shards)
    iterator = iterator_at(client, first, "TRIM_HORIZON")
    client.get_records(ShardIterator=iterator_at(client, second, "TRIM_HORIZON"))
    client.get_records(ShardIterator=iterator)
    time.sleep(0.1)
    client.get_records(ShardIterator=iterator)
    time.sleep(0.3)
    client.get_records(ShardIterator=iterator)

    window = control(fake_streams_server, "/_fake/stats")["get_records_intervals"]
    control(fake_streams_server, "/_fake/intervals/reset", {})
    time.sleep(0.05)
    client.get_records(ShardIterator=iterator)
    after_reset = control(fake_streams_server, "/_fake/stats")["get_records_intervals"]

    # Two intervals on the first shard (about 0.1 s and 0.3 s); the second shard's one call has none.
    assert window["count"] == 2 and window["shards_called"] == 2
    assert 0.3 <= window["max_s"] < 1.0 and 0.1 <= window["p50_s"] < 0.3 < window["p99_s"] <= 1.0
    assert sum(window["histogram_ms"].values()) == 2
    assert window["stalest_s"] >= 0.4  # the second shard, not called since the start
    # A new window keeps when each shard was last called: its first interval is a whole one.
    assert after_reset["count"] == 1 and 0.05 <= after_reset["max_s"] < 0.5

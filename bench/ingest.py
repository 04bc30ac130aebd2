"""Ingestion throughput: GetRecords bodies captured from DynamoDB Local, saved by Shardwatch's
path (the streams client's raw-records hook, then records_save) against a naive pipeline
(boto3's parsing and TypeDeserializer, one ORM save per record). Also the bench's rows for
a source, its stream and a shard, which the trigger benchmark uses too."""

import base64
import json
import statistics
import time
import uuid

import botocore.parsers
import botocore.session
from boto3.dynamodb.types import Binary, TypeDeserializer

from bench import workload
from bench.common import reset_tables
from streams.aws import _records_as_sent
from streams.ingest import records_save
from streams.models import ChangeRecord, Shard, Stream, StreamSource, digest_item_key, sequence_key


def bench_source(name: str):
    source = StreamSource.objects.create(
        table_name=name, region="us-east-1", stream_arn=f"arn:bench:{name}", view_type="NEW_AND_OLD_IMAGES",
        key_schema=["pk"], status=StreamSource.Status.ACTIVE,
    )
    return source, Stream.objects.create(source=source, arn=source.stream_arn)


def fresh_shard(stream, owner: str):
    return Shard.objects.create(stream=stream, shard_id=f"shardId-{uuid.uuid4().hex}", lease_owner=owner)


def _response_dict(body: bytes) -> dict:
    return {"status_code": 200, "headers": {}, "body": body}


def run_ours(bodies, stream) -> float:
    """Shardwatch's path: the streams client's raw-records hook, then records_save."""
    owner = "bench"
    shard = fresh_shard(stream, owner)
    shard = type(shard).objects.select_related("stream__source").get(pk=shard.pk)
    count = 0
    started = time.perf_counter()
    for body in bodies:
        response: dict = {}
        _records_as_sent(response_dict=_response_dict(body), customized_response_dict=response)
        saved = records_save(shard=shard, owner=owner, records=response["Records"], finished=False)
        assert saved == len(response["Records"])
        count += saved
    return count / (time.perf_counter() - started)


def _plain(value):
    if isinstance(value, set):
        return sorted(_plain(member) for member in value)
    if isinstance(value, Binary):
        return base64.b64encode(value.value).decode()
    return str(value)


def run_naive(bodies, stream) -> float:
    """What one would write first: boto3's own response parsing, its TypeDeserializer on
    every image, a top-level diff, and one ORM save (one transaction) per record."""
    deserializer = TypeDeserializer()
    shard = fresh_shard(stream, "naive")

    def plain(image):
        if image is None:
            return None
        decoded = {name: deserializer.deserialize(value) for name, value in image.items()}
        return json.loads(json.dumps(decoded, default=_plain))

    output_shape = (
        botocore.session.get_session().get_service_model("dynamodbstreams").operation_model("GetRecords").output_shape
    )
    parser = botocore.parsers.create_parser("json")
    count = 0
    started = time.perf_counter()
    for body in bodies:
        response = parser.parse(_response_dict(body), output_shape)
        for record in response["Records"]:
            data = record["dynamodb"]
            keys, old, new = plain(data["Keys"]), plain(data.get("OldImage")), plain(data.get("NewImage"))
            changed = sorted(name for name in {*(old or {}), *(new or {})} if (old or {}).get(name) != (new or {}).get(name))
            item_key = json.dumps(keys, sort_keys=True)
            ChangeRecord.objects.create(
                source_id=stream.source_id, shard=shard, sequence_number=data["SequenceNumber"],
                sequence_key=sequence_key(data["SequenceNumber"]), event_id=record["eventID"],
                event_name=record["eventName"], approximate_creation_time=data["ApproximateCreationDateTime"],
                size_bytes=data["SizeBytes"], view_type=data["StreamViewType"], keys=keys, old_image=old,
                new_image=new, item_key=item_key, item_hash=digest_item_key(item_key),
                diff=[{"path": name} for name in changed],
            )
            count += 1
    return count / (time.perf_counter() - started)


def bench_ingest() -> dict:
    table = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    workload.create_table(table)
    print("writing the captured workload to DynamoDB Local ...", flush=True)
    writes = workload.write_orders(table=table, orders=2000)
    bodies = workload.capture_bodies(table=table)
    records = sum(len(json.loads(body)["Records"]) for body in bodies)
    assert records == writes, (records, writes)
    reset_tables()
    _, stream = bench_source(table)
    ours = [run_ours(bodies, stream) for _ in range(3)]
    # Two thousand records give the naive rate well enough; all of them would take minutes.
    naive = [run_naive(bodies[:2], stream)]
    result = {
        "ingest_records": records,
        "ingest_records_per_s": round(statistics.median(ours)),
        "naive_records_per_s": round(statistics.median(naive)),
    }
    result["ingest_speedup_vs_naive"] = round(result["ingest_records_per_s"] / result["naive_records_per_s"], 1)
    return result

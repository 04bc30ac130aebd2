"""A realistic orders workload, written to DynamoDB Local and read back as GetRecords output."""

import random
import time

import boto3


def order_item(rng: random.Random, number: int) -> dict:
    return {
        "pk": {"S": f"ORDER#{number:07d}"},
        "status": {"S": "PENDING"},
        "total": {"N": f"{rng.randint(100, 99999)}.{rng.randint(0, 99):02d}"},
        "created_at": {"N": str(1_790_000_000 + number)},
        "customer": {"M": {
            "name": {"S": rng.choice(["Ada Lovelace", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"])},
            "email": {"S": f"customer{number}@example.com"},
            "address": {"M": {"city": {"S": rng.choice(["Oslo", "Lyon", "Austin", "Kyoto"])},
                               "zip": {"S": f"{rng.randint(10000, 99999)}"}}},
        }},
        "items": {"L": [
            {"M": {"sku": {"S": f"SKU-{rng.randint(1, 500)}"}, "qty": {"N": str(rng.randint(1, 5))},
                   "price": {"N": f"{rng.randint(1, 300)}.99"}}}
            for _ in range(rng.randint(1, 4))
        ]},
        "tags": {"SS": rng.sample(["gift", "express", "fragile", "b2b", "promo"], 2)},
        "signature": {"B": rng.randbytes(16)},
        "gift": {"BOOL": rng.random() < 0.2},
        "coupon": {"NULL": True},
    }


def write_orders(*, table: str, orders: int, seed: int = 7) -> int:
    """INSERTs, two MODIFYs per order on average and some REMOVEs. Returns the writes made."""
    client = boto3.client("dynamodb")
    rng = random.Random(seed)
    writes = 0
    for number in range(orders):
        client.put_item(TableName=table, Item=order_item(rng, number))
        writes += 1
        key = {"pk": {"S": f"ORDER#{number:07d}"}}
        for status in ("PAID", "SHIPPED"):
            client.update_item(
                TableName=table, Key=key,
                UpdateExpression="SET #s = :s, tracking = :t, #t = #t + :d ADD tags :tag REMOVE coupon",
                ExpressionAttributeNames={"#s": "status", "#t": "total"},
                ExpressionAttributeValues={":s": {"S": status}, ":t": {"S": f"TRK{rng.randint(0, 10**9)}"},
                                           ":d": {"N": "1"}, ":tag": {"SS": [status.lower()]}},
            )
            writes += 1
        if number % 5 == 0:
            client.delete_item(TableName=table, Key=key)
            writes += 1
    return writes


def create_table(name: str, *, client=None) -> None:
    """A table with a NEW_AND_OLD_IMAGES stream; `client` (a boto3 DynamoDB client) saves
    making one per table when many are made."""
    client = client or boto3.client("dynamodb")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def capture_bodies(*, table: str) -> list[bytes]:
    """Every GetRecords response body of the table's stream, as raw bytes off the wire."""
    client = boto3.client("dynamodbstreams")
    bodies: list[bytes] = []

    def keep(response_dict, **kwargs):
        if response_dict.get("status_code") == 200:
            bodies.append(bytes(response_dict["body"]))

    client.meta.events.register("before-parse.dynamodb-streams.GetRecords", keep)
    arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while iterator:
        response = client.get_records(ShardIterator=iterator, Limit=1000)
        if not response["Records"]:
            bodies.pop()
            break
        iterator = response.get("NextShardIterator")
        time.sleep(0.01)
    return bodies

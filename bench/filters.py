"""filter_matches_per_s: the event-pattern matcher on realistic stream records with 5 patterns."""

import json
import random
import timeit

from bench.workload import order_item
from streams.filters import compile_pattern

PATTERNS = [
    {"eventName": ["INSERT", "MODIFY"]},
    {"dynamodb": {"NewImage": {"status": {"S": ["SHIPPED"]}}}},
    {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "ORDER#"}]}}, "NewImage": {"status": {"S": [{"anything-but": "CANCELLED"}]}}}},
    {"dynamodb": {"SizeBytes": [{"numeric": [">", 100]}], "NewImage": {"customer": {"M": {"name": {"S": [{"equals-ignore-case": "ada lovelace"}]}}}}}},
    {"$or": [{"eventName": ["REMOVE"]}, {"dynamodb": {"NewImage": {"coupon": {"S": [{"exists": True}]}}}}]},
]


def _records() -> list[dict]:
    rng = random.Random(3)
    records = []
    for number in range(300):
        image = order_item(rng, number)
        image["signature"] = {"B": "c2lnbmF0dXJl"}  # as the stream sends binary: base64 text
        image["status"] = {"S": ["PENDING", "SHIPPED", "CANCELLED"][number % 3]}
        event = ["INSERT", "MODIFY", "REMOVE"][number % 3]
        data = {"Keys": {"pk": image["pk"]}, "SequenceNumber": str(number), "SizeBytes": 80 + number,
                "StreamViewType": "NEW_AND_OLD_IMAGES", "ApproximateCreationDateTime": 1795700000}
        if event != "REMOVE":
            data["NewImage"] = image
        if event != "INSERT":
            data["OldImage"] = image
        records.append({"eventName": event, "eventSource": "aws:dynamodb", "dynamodb": data})
    return records


def bench_filters() -> dict:
    patterns = [compile_pattern(json.dumps(pattern)) for pattern in PATTERNS]
    records = _records()

    def run():
        for record in records:
            for pattern in patterns:
                pattern.matches(record)

    seconds = min(timeit.repeat(run, number=10, repeat=5))
    return {
        "filter_patterns": len(patterns),
        # One "match" is one record checked against all the patterns, as a trigger does.
        "filter_matches_per_s": round(10 * len(records) / seconds),
        "filter_pattern_checks_per_s": round(10 * len(records) * len(patterns) / seconds),
    }

"""Handlers that triggers in tests/test_triggers.py run, written as one would for AWS Lambda.
They note what they were sent in CALLS so tests can assert on it."""

CALLS: list[list[str]] = []
STATE: dict = {}


def keys(event) -> list[str]:
    return [record["dynamodb"]["Keys"]["pk"]["S"] for record in event["Records"]]


def record_batches(event, context):
    CALLS.append(keys(event))


def fail_always(event, context):
    CALLS.append(keys(event))
    raise ValueError("boom")


def fail_on_poison(event, context):
    CALLS.append(keys(event))
    if any("poison" in record["dynamodb"].get("NewImage", {}) for record in event["Records"]):
        raise RuntimeError("poison record")


def report_failure_once(event, context):
    """Reports the first record marked `fail` as failed, the first time it sees it."""
    CALLS.append(keys(event))
    for record in event["Records"]:
        if "fail" in record["dynamodb"].get("NewImage", {}) and not STATE.get("failed"):
            STATE["failed"] = True
            return {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
    return {"batchItemFailures": []}


def report_malformed_once(event, context):
    CALLS.append(keys(event))
    if not STATE.get("failed"):
        STATE["failed"] = True
        return {"batchItemFailures": [{"itemIdentifier": ""}]}
    return None


def record_sequence(event, context):
    CALLS.append(keys(event))
    STATE.setdefault("seen", []).extend(
        (record["dynamodb"]["Keys"]["pk"]["S"], int(record["dynamodb"]["SequenceNumber"])) for record in event["Records"]
    )

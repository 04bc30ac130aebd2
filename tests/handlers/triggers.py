"""Handlers that triggers in tests/workers/test_triggers.py run, written as one would for AWS Lambda.
They note the keys of each batch they are sent (tests/handler_log.py); calls() reads them back."""

import json

from tests.support import handler_log


def calls() -> list[list[str]]:
    """The keys of each batch the handlers were sent in this test, in order."""
    return [entry["keys"] for entry in handler_log.notes() if "keys" in entry]


def seen() -> list[tuple[str, int]]:
    """(key, sequence number) of each record record_sequence was sent."""
    return [tuple(pair) for entry in handler_log.notes() for pair in entry.get("seen", [])]


def _called(event) -> None:
    handler_log.note({"keys": keys(event)})


def keys(event) -> list[str]:
    return [record["dynamodb"]["Keys"]["pk"]["S"] for record in event["Records"]]


def record_batches(event, context):
    _called(event)


def fail_always(event, context):
    _called(event)
    raise ValueError("boom")


def fail_echoing_items(event, context):
    """Fails as handlers often do: with the item's data in the error message."""
    _called(event)
    raise ValueError(f"cannot ship {[record['dynamodb'].get('NewImage') for record in event['Records']]}")


def fail_on_poison(event, context):
    _called(event)
    if any("poison" in record["dynamodb"].get("NewImage", {}) for record in event["Records"]):
        raise RuntimeError("poison record")


def report_failure_once(event, context):
    """Reports the first record marked `fail` as failed, the first time it sees it."""
    _called(event)
    for record in event["Records"]:
        if "fail" in record["dynamodb"].get("NewImage", {}) and handler_log.first_time("failed"):
            return {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
    return {"batchItemFailures": []}


def report_failure_always(event, context):
    """Reports the first record marked `fail` as failed, every time."""
    _called(event)
    for record in event["Records"]:
        if "fail" in record["dynamodb"].get("NewImage", {}):
            return {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
    return {"batchItemFailures": []}


def report_malformed_once(event, context):
    _called(event)
    if handler_log.first_time("failed"):
        return {"batchItemFailures": [{"itemIdentifier": ""}]}
    return None


def answer_once(event, context):
    """Returns the JSON the test set with handler_log.answer_set, the first time; then None."""
    _called(event)
    if handler_log.first_time("answered"):
        return json.loads(handler_log.answer())
    return None


def answer_always(event, context):
    """Returns the JSON the test set with handler_log.answer_set, every time."""
    _called(event)
    return json.loads(handler_log.answer())


def fail_noting_arn(event, context):
    """Notes the ARN its context gives, then fails."""
    handler_log.note({"function_arn": context.invoked_function_arn})
    _called(event)
    raise ValueError("boom")


def record_sequence(event, context):
    handler_log.note({
        "keys": keys(event),
        "seen": [(record["dynamodb"]["Keys"]["pk"]["S"], int(record["dynamodb"]["SequenceNumber"])) for record in event["Records"]],
    })


def note_images_answering(event, context):
    """Notes the new images it is sent and answers with them, as a handler that returns what it
    shipped: its response quotes item data."""
    images = [record["dynamodb"].get("NewImage") for record in event["Records"]]
    handler_log.note({"keys": keys(event), "images": images})
    return {"shipped": images}


def images_seen() -> list:
    """The new images note_images_answering was sent in this test, in order."""
    return [image for entry in handler_log.notes() for image in entry.get("images", [])]


def fail_quoting_name(event, context):
    """Fails quoting the first record's name attribute as it is: a handler's text may hold any
    character an item holds, NUL included."""
    raise ValueError(f"cannot ship {event['Records'][0]['dynamodb']['NewImage']['name']['S']}")

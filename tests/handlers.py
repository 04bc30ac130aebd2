"""Real Python handlers for tests/test_targets.py, imported by their dotted paths."""

import time


def echo(event, context):
    """Returns the event and what the context says, as a Lambda handler would see them."""
    return {
        "event": event,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


class RecordRejected(Exception):
    pass


def raising(event, context):
    raise RecordRejected(f"cannot take {len(event['Records'])} records")


def sleeping(event, context):
    """Sleeps event["sleep_s"] seconds, then says it finished (long after a timed-out test)."""
    time.sleep(event["sleep_s"])
    return {"slept": event["sleep_s"]}


def returning_non_json(event, context):
    return {"when": object()}


def partial_failure(event, context):
    return {"batchItemFailures": [{"itemIdentifier": event["Records"][-1]["dynamodb"]["SequenceNumber"]}]}


NOT_CALLABLE = 42

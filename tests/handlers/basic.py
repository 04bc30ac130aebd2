"""Real Python handlers for tests/workers/test_targets.py, imported by their dotted paths. They run in
a handler host process (workers/handler_host.py), as a Lambda function runs in its sandbox."""

import logging
import os
import sys
import time
from pathlib import Path

INVOCATIONS = 0


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
    """Sleeps event["sleep_s"] seconds, then says it finished, in event["marker"] if given."""
    time.sleep(event["sleep_s"])
    if event.get("marker"):
        Path(event["marker"]).write_text("finished")
    return {"slept": event["sleep_s"]}


def counting(event, context):
    """How many times this process ran the handler: module state lives as long as the host."""
    global INVOCATIONS
    INVOCATIONS += 1
    return {"invocations": INVOCATIONS, "pid": os.getpid()}


def exiting(event, context):
    os._exit(3)


def chatty(event, context):
    """Writes to stdout and stderr, as handlers do with print and logging."""
    print("x" * 70000)
    print("to stderr", file=sys.stderr)
    return {"records": len(event["Records"])}


def logging_a_line(event, context):
    logging.getLogger("orders.audit").warning("audited %d records", len(event["Records"]))
    return None


def returning_non_json(event, context):
    return {"when": object()}


def partial_failure(event, context):
    return {"batchItemFailures": [{"itemIdentifier": event["Records"][-1]["dynamodb"]["SequenceNumber"]}]}


NOT_CALLABLE = 42


def printing(event, context):
    """print()s as handlers written for Lambda do, to stdout, to stderr, and a line left open."""
    print(f"got {len(event['Records'])} records")
    print("to stderr", file=sys.stderr)
    print("no newline yet", end="")
    return None

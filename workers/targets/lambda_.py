"""Lambda targets: the event sent to an AWS Lambda function with a synchronous Invoke.

Each Invoke is tried once: the runner's schedule retries, as Lambda's event source mapping
does. Throttling and errors of the Lambda service itself come back as THROTTLED, which the
mapping retries without counting them against MaximumRetryAttempts.
"""

import os
import threading

import boto3
import botocore.config
import botocore.exceptions

from workers.models import Outcome, Trigger
from workers.targets.base import InvokeResult, answer_read, body_truncate, trigger_region

# Added to the function's own timeout before we stop waiting for the Lambda API: the
# function's timeout is enforced by Lambda, and its answer (a Sandbox.Timedout error) must
# still reach us.
LAMBDA_READ_MARGIN_S = 10

_clients: dict = {}
_clients_lock = threading.Lock()


def _lambda_client(*, region: str, timeout_s: int):
    # The endpoint comes from boto3's own AWS_ENDPOINT_URL_LAMBDA / AWS_ENDPOINT_URL (or real
    # AWS when unset). They are part of the key so that a changed variable takes effect.
    key = (region, timeout_s, os.environ.get("AWS_ENDPOINT_URL_LAMBDA"), os.environ.get("AWS_ENDPOINT_URL"))
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                config = botocore.config.Config(
                    connect_timeout=5,
                    read_timeout=timeout_s + LAMBDA_READ_MARGIN_S,
                    # No retries inside botocore: a retried Invoke after a read timeout runs
                    # the function twice. Throttling comes back as "throttled" and the
                    # caller's scheduler retries it with backoff, as the ESM does.
                    retries={"mode": "standard", "total_max_attempts": 1},
                )
                client = boto3.session.Session().client("lambda", region_name=region, config=config)
                _clients[key] = client
    return client


def lambda_invoke(*, trigger: Trigger, payload: bytes, request_id: str) -> InvokeResult:
    """Invoke trigger.function_name (RequestResponse) with the event. A FunctionError answer
    is a function error, or a timeout when Lambda timed the function out (Sandbox.Timedout)."""
    client = _lambda_client(region=trigger_region(trigger), timeout_s=trigger.timeout_s)
    try:
        answer = client.invoke(
            FunctionName=trigger.function_name,
            InvocationType="RequestResponse",
            Payload=payload,
        )
        text = answer["Payload"].read().decode("utf-8", errors="replace")
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "") or "ClientError"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.get("Message", "") or str(exc)
        outcome = Outcome.THROTTLED if status == 429 or status >= 500 or code == "TooManyRequestsException" else Outcome.FUNCTION_ERROR
        return InvokeResult(outcome, None, "", code, message)
    except botocore.exceptions.ReadTimeoutError as exc:
        # The function may still be running (or have finished): Lambda did not answer in time.
        return InvokeResult(Outcome.TIMEOUT, None, "", "ReadTimeoutError", str(exc))
    except botocore.exceptions.BotoCoreError as exc:  # endpoint unreachable, DNS, no credentials
        return InvokeResult(Outcome.FUNCTION_ERROR, None, "", type(exc).__name__, str(exc))

    response = answer_read(text)
    if answer.get("FunctionError"):
        details = response if isinstance(response, dict) else {}
        error_type = str(details.get("errorType") or answer["FunctionError"])
        error_message = str(details.get("errorMessage") or "")
        # Lambda reports its own timeout of the function as an error of type Sandbox.Timedout
        # (older runtimes: only the message "Task timed out after N seconds").
        timed_out = error_type == "Sandbox.Timedout" or error_message.startswith("Task timed out")
        outcome = Outcome.TIMEOUT if timed_out else Outcome.FUNCTION_ERROR
        return InvokeResult(outcome, response, body_truncate(text), error_type, error_message)
    return InvokeResult(Outcome.SUCCESS, response, body_truncate(text))

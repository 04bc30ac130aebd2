"""Invoking a trigger's target with one Lambda event, the way Lambda's event source mapping would.

``target_invoke(trigger=..., payload=..., request_id=...)`` returns an ``InvokeResult`` and never
raises for anything the target did: exceptions, non-2xx answers, timeouts and unreachable
endpoints all come back as an outcome, so the caller can record them and apply the trigger's
retry settings.

Outcomes:

- ``success``: the target answered; ``response`` holds its JSON (used for ReportBatchItemFailures).
- ``function_error``: the target failed, or could not be reached (connection refused, DNS,
  AccessDenied, a missing function, ...). ``error_type`` names the cause. Counts as an attempt.
- ``timeout``: the target did not answer within ``trigger.timeout_s``. Counts as an attempt.
- ``throttled``: the Lambda API itself answered 429 (TooManyRequestsException) or 5xx. Lambda's
  event source mapping retries these without counting them against MaximumRetryAttempts or
  bisecting the batch, so the caller should back off and retry the same batch with the same
  attempt number. It is deliberately not an ``Invocation.Outcome`` choice: it is not a result
  of the function.

Webhook signatures
------------------
A webhook target receives the event as ``POST`` with ``Content-Type: application/json`` and:

- ``X-Shardwatch-Timestamp``: unix seconds when the request was signed;
- ``X-Shardwatch-Signature``: ``v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret>``;
- ``X-Shardwatch-Request-Id``: the invocation's request id (the same on a retry of the request).

To verify, recompute the HMAC over the raw body bytes as received, compare in constant time,
and reject old timestamps so a captured request cannot be replayed::

    import hashlib, hmac, time

    def verify(secret: str, headers, body: bytes, tolerance_s: int = 300) -> bool:
        timestamp = headers["X-Shardwatch-Timestamp"]
        if abs(time.time() - int(timestamp)) > tolerance_s:
            return False
        expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers["X-Shardwatch-Signature"], "v1=" + expected)

An answer with a 2xx status is a success; a JSON body is read as the function's response (for
example ``{"batchItemFailures": [{"itemIdentifier": "<SequenceNumber>"}]}``). Redirects are
not followed: a 3xx is a function error.
"""

import base64
import dataclasses
import hashlib
import hmac
import importlib
import json
import os
import secrets
import socket
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

import boto3
import orjson
import botocore.config
import botocore.exceptions
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django import db
from django.conf import settings

from workers.models import MAX_PAYLOAD_BYTES, Trigger

BODY_LIMIT_BYTES = 64 * 1024

# Added to the function's own timeout before we stop waiting for the Lambda API: the
# function's timeout is enforced by Lambda, and its answer (a Sandbox.Timedout error) must
# still reach us.
LAMBDA_READ_MARGIN_S = 10

SUCCESS = "success"
FUNCTION_ERROR = "function_error"
TIMEOUT = "timeout"
THROTTLED = "throttled"


@dataclasses.dataclass(frozen=True)
class InvokeResult:
    outcome: str  # "success" | "function_error" | "timeout" | "throttled"
    response: object  # the parsed JSON the function returned (None if none/unparseable)
    body: str  # raw response text, truncated to 64 KB
    error_type: str = ""
    error_message: str = ""
    duration_ms: float = 0.0


def target_invoke(*, trigger: Trigger, payload: bytes, request_id: str) -> InvokeResult:
    """Send one event, given as its JSON, to the trigger's target and say how it went. The
    webhook and Lambda targets send those bytes as they are."""
    invoke = {
        Trigger.Target.PYTHON: _python_invoke,
        Trigger.Target.WEBHOOK: _webhook_invoke,
        Trigger.Target.LAMBDA: _lambda_invoke,
    }.get(trigger.target)
    if invoke is None:
        return InvokeResult(
            FUNCTION_ERROR, None, "", "Shardwatch.UnknownTarget", f"Unknown target {trigger.target!r}"
        )
    started = time.perf_counter()
    result = invoke(trigger=trigger, payload=payload, request_id=request_id)
    return dataclasses.replace(result, duration_ms=(time.perf_counter() - started) * 1000)


# Helpers shared by the targets ---------------------------------------------------------------


def _truncate(text: str) -> str:
    data = text.encode("utf-8")
    if len(data) <= BODY_LIMIT_BYTES:
        return text
    return data[:BODY_LIMIT_BYTES].decode("utf-8", errors="ignore")


def _parse_json(text: str) -> object:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _region(trigger: Trigger) -> str:
    try:
        return trigger.source.region or "us-east-1"
    except Trigger.source.RelatedObjectDoesNotExist:
        return "us-east-1"


# Python handlers -----------------------------------------------------------------------------


class LambdaContext:
    """The attributes and method of Lambda's Python context object, for handlers run in-process."""

    function_version = "$LATEST"
    memory_limit_in_mb = 128
    identity = None
    client_context = None

    def __init__(self, *, name: str, region: str, request_id: str, timeout_s: float):
        self.function_name = name
        self.invoked_function_arn = f"arn:aws:lambda:{region}:000000000000:function:{name}"
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _HandlerNotFound(Exception):
    pass


def _handler_load(path: str):
    """Import "package.module.function". Raises ImportError or _HandlerNotFound."""
    module_name, _, attribute = path.strip().rpartition(".")
    if not module_name or not attribute:
        raise _HandlerNotFound(f"Handler {path!r} is not a dotted path of the form module.function")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute, None)
    if handler is None:
        raise _HandlerNotFound(f"Handler {attribute!r} missing on module {module_name!r}")
    if not callable(handler):
        raise _HandlerNotFound(f"{path!r} is not callable")
    return handler


def handler_check(path: str) -> str | None:
    """Why the dotted path cannot serve as a handler, or None if it can (for admin validation)."""
    try:
        _handler_load(path)
    except _HandlerNotFound as exc:
        return str(exc)
    except Exception as exc:  # importing runs arbitrary module code: any error is a reason
        return f"Unable to import module for {path!r}: {type(exc).__name__}: {exc}"
    return None


def _python_invoke(*, trigger: Trigger, payload: bytes, request_id: str) -> InvokeResult:
    # The names are Lambda's own, so a dashboard reads the same for both kinds of target.
    try:
        handler = _handler_load(trigger.handler)
    except _HandlerNotFound as exc:
        return InvokeResult(FUNCTION_ERROR, None, "", "Runtime.HandlerNotFound", str(exc))
    except Exception as exc:
        return InvokeResult(
            FUNCTION_ERROR, None, _truncate(traceback.format_exc()), "Runtime.ImportModuleError",
            f"Unable to import module for {trigger.handler!r}: {type(exc).__name__}: {exc}",
        )

    context = LambdaContext(
        name=trigger.name, region=_region(trigger), request_id=request_id, timeout_s=trigger.timeout_s
    )
    outcome: dict = {}
    # The handler gets its own copy decoded from JSON, as on Lambda: it may change it, and a
    # timed-out handler may still be changing it while the caller retries or bisects the batch.
    event = orjson.loads(payload)

    def run():
        try:
            outcome["value"] = handler(event, context)
        except BaseException as exc:  # SystemExit from a handler is its failure, not the worker's
            outcome["error"] = exc
            outcome["traceback"] = traceback.format_exc()
        finally:
            # Django opens a connection per thread; this thread's would otherwise stay open.
            db.connections.close_all()

    # The handler runs in a thread so the Celery worker child can stop waiting for it after
    # timeout_s. Python cannot kill a thread: a timed-out handler keeps running in the
    # background of this worker process until it returns by itself. Its side effects may still
    # happen, possibly while the retry of the same batch runs, and a handler stuck for good
    # holds a thread (and whatever it locked) until the worker child is recycled
    # (--max-tasks-per-child) or restarted. Lambda, by contrast, kills the sandbox. Daemon, so
    # that a stuck handler does not stop the worker from shutting down.
    thread = threading.Thread(target=run, name=f"handler-{trigger.name}-{request_id}", daemon=True)
    thread.start()
    thread.join(trigger.timeout_s)
    if thread.is_alive():
        return InvokeResult(
            TIMEOUT, None, "", "Sandbox.Timedout", f"Task timed out after {trigger.timeout_s:.2f} seconds"
        )

    if "error" in outcome:
        exc = outcome["error"]
        return InvokeResult(
            FUNCTION_ERROR, None, _truncate(outcome["traceback"]), type(exc).__name__, str(exc)
        )
    try:
        text = json.dumps(outcome["value"])
    except (TypeError, ValueError) as exc:
        # Lambda's Python runtime fails the same way when it cannot serialise the return value.
        return InvokeResult(
            FUNCTION_ERROR, None, "", "Runtime.MarshalError", f"Unable to marshal response: {exc}"
        )
    return InvokeResult(SUCCESS, json.loads(text), _truncate(text))


# Webhooks ------------------------------------------------------------------------------------


class WebhookSecretUnreadable(Exception):
    """The stored secret was encrypted under another SECRET_KEY."""


def _fernet() -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"shardwatch webhook secret v1"
    ).derive(settings.SECRET_KEY.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def webhook_secret_new() -> tuple[str, str]:
    """A new signing secret: (plain text to show the user once, encrypted form to store)."""
    plain = "whsec_" + secrets.token_urlsafe(32)
    return plain, _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def webhook_secret_decrypt(encrypted: str) -> str:
    try:
        return _fernet().decrypt(encrypted.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as exc:
        raise WebhookSecretUnreadable(
            "The webhook secret cannot be decrypted: it was stored under a different SECRET_KEY "
            "(or is damaged). Generate a new secret for this trigger and give it to the receiver."
        ) from exc


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body: the receiver would see
    # a request that is not the event. Make a 3xx an HTTPError instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _read_limited(response) -> tuple[str, bool]:
    data = response.read(MAX_PAYLOAD_BYTES + 1)
    return data[:MAX_PAYLOAD_BYTES].decode("utf-8", errors="replace"), len(data) > MAX_PAYLOAD_BYTES


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout))


def _webhook_invoke(*, trigger: Trigger, payload: bytes, request_id: str) -> InvokeResult:
    url = trigger.webhook_url
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        # urllib also opens file:// and ftp:// URLs; a webhook must never read local files.
        return InvokeResult(FUNCTION_ERROR, None, "", "Shardwatch.BadWebhookUrl", f"Not an http(s) URL: {url!r}")
    if not trigger.webhook_secret_encrypted:
        return InvokeResult(FUNCTION_ERROR, None, "", "Shardwatch.WebhookSecretMissing", "The trigger has no secret")
    try:
        secret = webhook_secret_decrypt(trigger.webhook_secret_encrypted)
    except WebhookSecretUnreadable as exc:
        return InvokeResult(FUNCTION_ERROR, None, "", "Shardwatch.WebhookSecretUnreadable", str(exc))

    body = payload
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Shardwatch",
            "X-Shardwatch-Timestamp": timestamp,
            "X-Shardwatch-Signature": webhook_signature(secret=secret, timestamp=timestamp, body=body),
            "X-Shardwatch-Request-Id": request_id,
        },
    )
    # urllib's timeout applies to each socket operation (connect, each read), not to the whole
    # exchange: a receiver that trickles bytes can take longer than timeout_s in total.
    try:
        with _opener.open(request, timeout=trigger.timeout_s) as response:
            text, too_large = _read_limited(response)
    except urllib.error.HTTPError as exc:
        try:
            text, _ = _read_limited(exc)
        except Exception:
            text = ""
        return InvokeResult(
            FUNCTION_ERROR, _parse_json(text), _truncate(text), f"HTTP {exc.code}", exc.reason or ""
        )
    except urllib.error.URLError as exc:
        if _is_timeout(exc.reason):
            return InvokeResult(TIMEOUT, None, "", "Timeout", f"No answer within {trigger.timeout_s} s")
        reason = exc.reason
        name = type(reason).__name__ if isinstance(reason, BaseException) else "URLError"
        return InvokeResult(FUNCTION_ERROR, None, "", name, str(reason))
    except OSError as exc:  # timeouts and resets while reading the answer
        if _is_timeout(exc):
            return InvokeResult(TIMEOUT, None, "", "Timeout", f"No answer within {trigger.timeout_s} s")
        return InvokeResult(FUNCTION_ERROR, None, "", type(exc).__name__, str(exc))
    except Exception as exc:  # http.client errors such as RemoteDisconnected, BadStatusLine
        return InvokeResult(FUNCTION_ERROR, None, "", type(exc).__name__, str(exc))
    if too_large:
        return InvokeResult(
            FUNCTION_ERROR, None, _truncate(text), "Function.ResponseSizeTooLarge",
            f"Response larger than {MAX_PAYLOAD_BYTES} bytes",
        )
    return InvokeResult(SUCCESS, _parse_json(text), _truncate(text))


# Lambda --------------------------------------------------------------------------------------

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


def _lambda_invoke(*, trigger: Trigger, payload: bytes, request_id: str) -> InvokeResult:
    client = _lambda_client(region=_region(trigger), timeout_s=trigger.timeout_s)
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
        outcome = THROTTLED if status == 429 or status >= 500 or code == "TooManyRequestsException" else FUNCTION_ERROR
        return InvokeResult(outcome, None, "", code, message)
    except botocore.exceptions.ReadTimeoutError as exc:
        # The function may still be running (or have finished): Lambda did not answer in time.
        return InvokeResult(TIMEOUT, None, "", "ReadTimeoutError", str(exc))
    except botocore.exceptions.BotoCoreError as exc:  # endpoint unreachable, DNS, no credentials
        return InvokeResult(FUNCTION_ERROR, None, "", type(exc).__name__, str(exc))

    response = _parse_json(text)
    if answer.get("FunctionError"):
        details = response if isinstance(response, dict) else {}
        error_type = str(details.get("errorType") or answer["FunctionError"])
        error_message = str(details.get("errorMessage") or "")
        # Lambda reports its own timeout of the function as an error of type Sandbox.Timedout
        # (older runtimes: only the message "Task timed out after N seconds").
        timed_out = error_type == "Sandbox.Timedout" or error_message.startswith("Task timed out")
        outcome = TIMEOUT if timed_out else FUNCTION_ERROR
        return InvokeResult(outcome, response, _truncate(text), error_type, error_message)
    return InvokeResult(SUCCESS, response, _truncate(text))

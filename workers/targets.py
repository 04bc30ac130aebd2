"""Invoking a trigger's target with one Lambda event, the way Lambda's event source mapping would.

``target_invoke(trigger=..., payload=..., request_id=...)`` returns an ``InvokeResult`` and never
raises for anything the target did: exceptions, non-2xx answers, timeouts and unreachable
endpoints all come back as an outcome, so the caller can record them and apply the trigger's
retry settings.

Outcomes:

- ``success``: the target answered; ``response`` holds its answer, read the same way for every
  target (see ``InvokeResult``; used for ReportBatchItemFailures).
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

An answer with a 2xx status is a success, and its body is read as the function's response (for
example ``{"batchItemFailures": [{"itemIdentifier": "<SequenceNumber>"}]}``): an empty body is
no response, as a function returning None; a body that is not JSON is ``NOT_JSON``, which a
trigger with ReportBatchItemFailures reads as a malformed response (workers.triggers
``batch_item_failures``). Redirects are not followed: a 3xx is a function error.
"""

import atexit
import base64
import dataclasses
import fcntl
import hashlib
import hmac
import json
import math
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import boto3
import botocore.config
import botocore.exceptions
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from workers import handler_host
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


class _NotJson:
    """The response of a target whose answer is not JSON. It is not None: None is the answer
    null, or no answer at all, which Lambda takes as a success."""

    def __repr__(self) -> str:
        return "NOT_JSON"


NOT_JSON = _NotJson()


@dataclasses.dataclass(frozen=True)
class InvokeResult:
    outcome: str  # "success" | "function_error" | "timeout" | "throttled"
    # What the function answered, read the same way for every kind of target: the parsed JSON,
    # None for null or an empty answer, NOT_JSON for an answer that is not JSON.
    response: object
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
    # The one reading of an answer for all three kinds of target (a Python handler's is always
    # JSON; a webhook's or a Lambda custom runtime's may be anything).
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return NOT_JSON


def _too_large(text: str) -> InvokeResult:
    # Lambda's limit on a synchronous response is its 6 MB payload limit.
    return InvokeResult(
        FUNCTION_ERROR, None, _truncate(text), "Function.ResponseSizeTooLarge",
        f"Response larger than {MAX_PAYLOAD_BYTES} bytes",
    )


def _region(trigger: Trigger) -> str:
    try:
        return trigger.source.region or "us-east-1"
    except Trigger.source.RelatedObjectDoesNotExist:
        return "us-east-1"


# Python handlers -----------------------------------------------------------------------------
#
# A handler runs in a process of its own, workers/handler_host.py, started by the worker that
# invokes it and kept warm for the next invocation, as Lambda keeps an execution environment.
# A timeout kills that process, as Lambda kills the sandbox: the handler cannot go on running
# next to the retry of its batch. Concurrent invocations of one handler in one worker process
# each get a host of their own.

# Lambda's limit on a function's initialisation (its module imports), apart from its timeout.
INIT_TIMEOUT_S = 10.0
# Lambda's default memory setting, reported by context.memory_limit_in_mb; nothing enforces it.
MEMORY_MB = 128
# A warm host nobody used for this long is stopped, as Lambda reclaims idle environments.
HOST_IDLE_S = 600.0
PIPE_BYTES = 1024 * 1024


class _HostFailed(Exception):
    """The host process exited, or broke the protocol."""


class _HostTimedOut(Exception):
    pass


class HandlerHost:
    """One handler process, and the pipes to it."""

    def __init__(self, path: str):
        self.path = path
        request_read, self._requests = os.pipe()
        self._responses, response_write = os.pipe()
        environment = dict(os.environ)
        # The handler's modules are found from the project root, whatever the worker's cwd.
        environment["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(settings.BASE_DIR), environment.get("PYTHONPATH", "")) if part
        )
        for descriptor in (self._requests, self._responses):
            # A batch of up to 6 MB passes without waiting for the host to drain a 64 KB pipe.
            try:
                fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:
                pass  # above /proc/sys/fs/pipe-max-size for this user: the default still works
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "workers.handler_host", path, str(request_read), str(response_write), str(os.getpid())],
                pass_fds=(request_read, response_write), env=environment, cwd=settings.BASE_DIR,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            os.close(request_read)
            os.close(response_write)
        self.used_at = time.monotonic()

    def init(self) -> dict:
        return self._answer(time.monotonic() + INIT_TIMEOUT_S)

    def invoke(self, *, header: dict, payload: bytes, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        try:
            _write_all(self._requests, handler_host.frame(json.dumps(header).encode()) + handler_host.frame(payload))
        except OSError as exc:  # BrokenPipeError: the host is gone
            raise _HostFailed(str(exc)) from exc
        answer = self._answer(deadline)
        self.used_at = time.monotonic()
        return answer

    def _answer(self, deadline: float) -> dict:
        head = self._read(handler_host.LENGTH.size, deadline)
        (length,) = handler_host.LENGTH.unpack(head)
        try:
            return json.loads(self._read(length, deadline))
        except ValueError as exc:
            raise _HostFailed(f"unreadable answer: {exc}") from exc

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, got = [], 0
        while got < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _readable(self._responses, remaining):
                raise _HostTimedOut()
            chunk = os.read(self._responses, min(size - got, 1 << 20))
            if not chunk:
                raise _HostFailed(f"exit status {self.process.wait()}")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def alive(self) -> bool:
        """Whether an idle host can take a request. An idle host never writes, so a readable
        answer pipe means its end was closed: the host is gone (even before it can be reaped)."""
        return self.process.poll() is None and not _readable(self._responses, 0)

    def stop(self) -> None:
        """Kill the host and whatever its handler started."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for descriptor in (self._requests, self._responses):
            try:
                os.close(descriptor)
            except OSError:
                pass


def _readable(descriptor: int, timeout_s: float) -> bool:
    # poll, not select: a worker may hold more than select's 1024 descriptors.
    poller = select.poll()
    poller.register(descriptor, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(max(0, math.ceil(timeout_s * 1000))))


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


_idle_hosts: dict[str, list[HandlerHost]] = {}
_hosts_lock = threading.Lock()


def _host_take(path: str) -> HandlerHost | None:
    """A warm host for the handler, or None: the caller starts one."""
    stale = []
    with _hosts_lock:
        now = time.monotonic()
        for hosts in _idle_hosts.values():
            stale += [host for host in hosts if now - host.used_at > HOST_IDLE_S]
            hosts[:] = [host for host in hosts if now - host.used_at <= HOST_IDLE_S]
        hosts = _idle_hosts.get(path) or []
        host = None
        while hosts and host is None:
            host = hosts.pop()
            if not host.alive():
                # Died while idle, e.g. with the thread that started it (handler_host._die_with).
                stale.append(host)
                host = None
    for old in stale:
        old.stop()
    return host


def _host_give_back(host: HandlerHost) -> None:
    with _hosts_lock:
        _idle_hosts.setdefault(host.path, []).append(host)


def handler_hosts_stop() -> None:
    """Stop every idle handler host of this process: the next invocations start cold."""
    with _hosts_lock:
        hosts = [host for hosts in _idle_hosts.values() for host in hosts]
        _idle_hosts.clear()
    for host in hosts:
        host.stop()


def _forget_hosts() -> None:
    # A forked child (a Celery pool process) must not use or stop its parent's hosts.
    _idle_hosts.clear()


os.register_at_fork(after_in_child=_forget_hosts)
atexit.register(handler_hosts_stop)


def handler_check(path: str) -> str | None:
    """Why the dotted path cannot serve as a handler, or None if it can (for admin validation).
    Imports the module in this process."""
    try:
        handler_host.handler_load(path)
    except handler_host.HandlerNotFound as exc:
        return str(exc)
    except Exception as exc:  # importing runs arbitrary module code: any error is a reason
        return f"Unable to import module for {path!r}: {type(exc).__name__}: {exc}"
    return None


def _host_error(answer: dict) -> InvokeResult:
    return InvokeResult(
        FUNCTION_ERROR, None, _truncate(answer.get("stackTrace", "")), answer.get("errorType", "Runtime.Unknown"),
        answer.get("errorMessage", ""),
    )


def _python_invoke(*, trigger: Trigger, payload: bytes, request_id: str) -> InvokeResult:
    # Error names are Lambda's own, so a dashboard reads the same for both kinds of target.
    host = _host_take(trigger.handler)
    if host is None:
        host = HandlerHost(trigger.handler)
        try:
            started = host.init()
        except (_HostTimedOut, _HostFailed) as exc:
            host.stop()
            reason = f"no answer within {INIT_TIMEOUT_S:.0f} s" if isinstance(exc, _HostTimedOut) else str(exc)
            return InvokeResult(FUNCTION_ERROR, None, "", "Runtime.InitError", f"The handler's module did not load: {reason}")
        if started.get("init") != "ok":
            host.stop()
            return _host_error(started)
    try:
        answer = host.invoke(
            header={"request_id": request_id, "function_name": trigger.name, "region": _region(trigger),
                    "timeout_s": trigger.timeout_s, "memory_mb": MEMORY_MB},
            payload=payload, timeout_s=trigger.timeout_s,
        )
    except _HostTimedOut:
        host.stop()
        return InvokeResult(TIMEOUT, None, "", "Sandbox.Timedout", f"Task timed out after {trigger.timeout_s:.2f} seconds")
    except _HostFailed as exc:
        host.stop()
        return InvokeResult(
            FUNCTION_ERROR, None, "", "Runtime.ExitError",
            f"RequestId: {request_id} Error: Runtime exited with error: {exc}",
        )
    _host_give_back(host)
    if not answer.get("ok"):
        return _host_error(answer)
    text = answer.get("body", "null")
    if len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        return _too_large(text)
    return InvokeResult(SUCCESS, _parse_json(text), _truncate(text))


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

    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Shardwatch",
            "X-Shardwatch-Timestamp": timestamp,
            "X-Shardwatch-Signature": webhook_signature(secret=secret, timestamp=timestamp, body=payload),
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
        return _too_large(text)
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

"""The process a Python-handler trigger's handler runs in: Shardwatch's Lambda execution environment.

Started by workers.targets.python as `python -m workers.handler_host <handler> <request fd> <response fd> <worker pid>`,
one per handler per worker process, and kept warm between invocations, as Lambda keeps an
execution environment: module state survives from one invocation to the next, and a timeout
kills the whole process, so a handler that ran too long can never carry on next to its retry.

It imports nothing of Shardwatch's and does not set up Django: a handler written for Lambda
finds here what it finds there, the event, the context and its own modules.

Protocol (every frame: 4-byte big-endian length, then that many bytes):
- host -> worker, once: JSON {"init": "ok"} or {"init": "error", "errorType", "errorMessage", "stackTrace"}.
- worker -> host, per invocation: a JSON header {"request_id", "function_name", "trigger_id",
  "source_id", "shard_id", "region", "timeout_s", "memory_mb"} (source_id and shard_id, AWS's
  ShardId, may be null), then the event's JSON bytes.
- host -> worker, per invocation: JSON {"ok": true, "body": "<the handler's return value as JSON>"}
  or {"ok": false, "errorType", "errorMessage", "stackTrace"}.

Logging: the handler's log records go to stderr (the worker's), as readable text, or with
LOG_FORMAT=json in the environment one JSON object a line with the invocation's trigger,
source and shard ids as `trigger`, `source` and `shard`. What the handler writes to
sys.stdout and sys.stderr (print) becomes log records too, a line each, of the loggers
`handler.stdout` (INFO) and `handler.stderr` (WARNING), so no raw line breaks LOG_FORMAT=json
and the fields are on those lines as well; a line left open is logged when the invocation
ends. Only Python's sys.stdout and sys.stderr are taken: a child process the handler starts, or
C code writing to file descriptors 1 and 2, still writes raw.
"""

import ctypes
import importlib
import io
import json
import logging
import os
import signal
import struct
import sys
import threading
import time
import traceback
import uuid

import orjson

LENGTH = struct.Struct(">I")
# The worker passes its settings.LOG_FORMAT ("text" or "json") in this variable.
LOG_FORMAT_ENV = "LOG_FORMAT"
PR_SET_PDEATHSIG = 1


def function_arn(*, name: str, region: str) -> str:
    """The ARN a handler's context gives as invoked_function_arn: its trigger's name, in a
    placeholder account, as there is no AWS account behind a handler host."""
    return f"arn:aws:lambda:{region}:000000000000:function:{name}"


class LambdaContext:
    """The attributes and methods of Lambda's Python context object."""

    function_version = "$LATEST"
    identity = None
    client_context = None

    def __init__(self, *, name: str, region: str, request_id: str, timeout_s: float, memory_mb: int):
        self.function_name = name
        self.invoked_function_arn = function_arn(name=name, region=region)
        self.aws_request_id = request_id
        self.memory_limit_in_mb = memory_mb
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class HandlerNotFound(Exception):
    pass


def handler_load(path: str):
    """Import "package.module.function". Raises ImportError (or whatever the module raises) or
    HandlerNotFound."""
    module_name, _, attribute = path.strip().rpartition(".")
    if not module_name or not attribute:
        raise HandlerNotFound(f"Handler {path!r} is not a dotted path of the form module.function")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute, None)
    if handler is None:
        raise HandlerNotFound(f"Handler {attribute!r} missing on module {module_name!r}")
    if not callable(handler):
        raise HandlerNotFound(f"{path!r} is not callable")
    return handler


def _read_exactly(stream, size: int) -> bytes | None:
    # A pipe hands over at most its buffer (64 KB) per read; None when the writer is gone.
    chunks, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def frame_read(stream) -> bytes | None:
    head = _read_exactly(stream, LENGTH.size)
    if head is None:
        return None
    return _read_exactly(stream, LENGTH.unpack(head)[0])


def frame(data: bytes) -> bytes:
    """One frame of the protocol: the length, then the data."""
    return LENGTH.pack(len(data)) + data


def frame_write(stream, data: bytes) -> None:
    stream.write(frame(data))
    stream.flush()


def _error(kind: str, exc: BaseException) -> dict:
    # Lambda's error document for an unhandled exception.
    return {"errorType": kind, "errorMessage": str(exc), "stackTrace": traceback.format_exc()}


class _InvocationFields(logging.Filter):
    """Adds the trigger, source and shard ids of the invocation under way (one at a time per
    host) to each record as `trigger`, `source` and `shard`, the fields meters.logcontext gives
    a worker's own lines. A field the handler passes itself wins."""

    fields: dict = {}

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in self.fields.items():
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


class _LogWriter(io.TextIOBase):
    """A text stream that logs each line written to it as a record of `logger` at `level`:
    the handler's sys.stdout and sys.stderr. Lines from several threads of the handler are
    kept whole; a write made while logging (an error inside logging that it reports to
    sys.stderr) goes to `fallback`, the real stream, instead of looping."""

    def __init__(self, *, logger: logging.Logger, level: int, fallback):
        super().__init__()
        self._logger, self._level, self._fallback = logger, level, fallback
        self._pending = ""
        self._lock = threading.RLock()
        self._logging = threading.local()

    @property
    def encoding(self):
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if getattr(self._logging, "active", False):
            return self._fallback.write(text)
        with self._lock:
            lines = (self._pending + text).split("\n")
            self._pending = lines.pop()
            for line in lines:
                self._log(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                line, self._pending = self._pending, ""
                self._log(line)

    def _log(self, line: str) -> None:
        self._logging.active = True
        try:
            self._logger.log(self._level, line.rstrip("\r"))
        finally:
            self._logging.active = False


def _prints_capture() -> list[_LogWriter]:
    """The handler's sys.stdout and sys.stderr, as loggers (see the module's docstring). The
    log handler keeps the real stderr it was made with."""
    writers = [
        _LogWriter(logger=logging.getLogger("handler.stdout"), level=logging.INFO, fallback=sys.__stderr__),
        _LogWriter(logger=logging.getLogger("handler.stderr"), level=logging.WARNING, fallback=sys.__stderr__),
    ]
    sys.stdout, sys.stderr = writers
    return writers


def _logging_configure(log_format: str) -> None:
    """Like Lambda's runtime, log records reach the function's log (here, the worker's stderr),
    in the worker's LOG_FORMAT: "json" gives the fields of settings.LOGGING's json formatter
    (config/settings.py; Django is not set up here, so they are repeated), plus `trigger`,
    `source` and `shard`; anything else, readable text."""
    handler = logging.StreamHandler()
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "%(levelname)s %(name)s %(process)d %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "process": "pid"}, timestamp="time",
        ))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(_InvocationFields())
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _die_with(parent: int) -> None:
    """A worker killed with SIGKILL cannot stop its host, and a host whose handler is stuck
    never reads the closed pipe: have the kernel kill the host with the thread that started
    it (Linux's PR_SET_PDEATHSIG), and, where that is missing, leave once adopted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the worker died before the line above
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    path, request_fd, response_fd, parent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    _die_with(parent)
    requests = os.fdopen(request_fd, "rb", buffering=0)
    responses = os.fdopen(response_fd, "wb", buffering=0)
    _logging_configure(os.environ.get(LOG_FORMAT_ENV, "text"))
    writers = _prints_capture()

    try:
        handler = handler_load(path)
    except HandlerNotFound as exc:
        frame_write(responses, json.dumps({"init": "error", **_error("Runtime.HandlerNotFound", exc)}).encode())
        return
    except BaseException as exc:  # importing runs arbitrary module code: any error is the reason
        error = _error("Runtime.ImportModuleError", exc)
        error["errorMessage"] = f"Unable to import module for {path!r}: {type(exc).__name__}: {exc}"
        frame_write(responses, json.dumps({"init": "error", **error}).encode())
        return
    frame_write(responses, b'{"init": "ok"}')

    while True:
        header = frame_read(requests)
        payload = frame_read(requests)
        if header is None or payload is None:
            return  # the worker is gone or stopped us
        request = json.loads(header)
        _InvocationFields.fields = {
            "trigger": request.get("trigger_id"), "source": request.get("source_id"), "shard": request.get("shard_id"),
        }
        context = LambdaContext(
            name=request["function_name"], region=request["region"], request_id=request["request_id"],
            timeout_s=request["timeout_s"], memory_mb=request["memory_mb"],
        )
        try:
            value = handler(orjson.loads(payload), context)
        except BaseException as exc:  # SystemExit from a handler is its failure, as on Lambda
            answer = {"ok": False, **_error(type(exc).__name__, exc)}
        else:
            try:
                answer = {"ok": True, "body": json.dumps(value)}
            except (TypeError, ValueError) as exc:
                # Lambda's Python runtime fails the same way when it cannot serialise the value.
                answer = {"ok": False, "errorType": "Runtime.MarshalError",
                          "errorMessage": f"Unable to marshal response: {exc}", "stackTrace": ""}
        for writer in writers:  # a line left open belongs to this invocation
            writer.flush()
        frame_write(responses, json.dumps(answer).encode())


if __name__ == "__main__":
    main()

"""Python handlers: a trigger's handler run in a process of its own, as Lambda runs a function.

A handler runs in workers/handler_host.py, started by the worker that invokes it and kept warm
for the next invocation, as Lambda keeps an execution environment. A timeout kills that
process, as Lambda kills the sandbox: the handler cannot go on running next to the retry of its
batch. Concurrent invocations of one handler in one worker process each get a host of their
own. Error names are Lambda's own, so a dashboard reads the same for both kinds of target.
"""

import atexit
import fcntl
import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time

from django.conf import settings

from meters.logcontext import log_context_fields
from workers import handler_host
from workers.models import MAX_PAYLOAD_BYTES, Outcome, Trigger
from workers.targets.base import InvokeResult, answer_read, body_truncate, result_too_large, trigger_region

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
        # The handler's log lines come out in the worker's format (handler_host._logging_configure).
        environment[handler_host.LOG_FORMAT_ENV] = settings.LOG_FORMAT
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
        Outcome.FUNCTION_ERROR, None, body_truncate(answer.get("stackTrace", "")), answer.get("errorType", "Runtime.Unknown"),
        answer.get("errorMessage", ""),
    )


def python_invoke(*, trigger: Trigger, payload: bytes, request_id: str) -> InvokeResult:
    """Call trigger.handler with the event in a warm host, or a new one (whose module load
    has INIT_TIMEOUT_S apart from the trigger's timeout). A host that timed out or died is
    killed, never reused."""
    host = _host_take(trigger.handler)
    if host is None:
        host = HandlerHost(trigger.handler)
        try:
            started = host.init()
        except (_HostTimedOut, _HostFailed) as exc:
            host.stop()
            reason = f"no answer within {INIT_TIMEOUT_S:.0f} s" if isinstance(exc, _HostTimedOut) else str(exc)
            return InvokeResult(Outcome.FUNCTION_ERROR, None, "", "Runtime.InitError", f"The handler's module did not load: {reason}")
        if started.get("init") != "ok":
            host.stop()
            return _host_error(started)
    try:
        answer = host.invoke(
            header={"request_id": request_id, "function_name": trigger.name, "trigger_id": trigger.id,
                    "source_id": trigger.source_id, "shard_id": log_context_fields().get("shard"),
                    "region": trigger_region(trigger),
                    "timeout_s": trigger.timeout_s, "memory_mb": MEMORY_MB},
            payload=payload, timeout_s=trigger.timeout_s,
        )
    except _HostTimedOut:
        host.stop()
        return InvokeResult(Outcome.TIMEOUT, None, "", "Sandbox.Timedout", f"Task timed out after {trigger.timeout_s:.2f} seconds")
    except _HostFailed as exc:
        host.stop()
        return InvokeResult(
            Outcome.FUNCTION_ERROR, None, "", "Runtime.ExitError",
            f"RequestId: {request_id} Error: Runtime exited with error: {exc}",
        )
    _host_give_back(host)
    if not answer.get("ok"):
        return _host_error(answer)
    text = answer.get("body", "null")
    if len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        return result_too_large(text)
    return InvokeResult(Outcome.SUCCESS, answer_read(text), body_truncate(text))


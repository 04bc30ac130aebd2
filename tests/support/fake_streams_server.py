"""The fake Streams API (tests/support/fake_streams.py) as a real HTTP endpoint, for boto3
clients in this process or in others: readers under a benchmark, Celery workers in a test.

It speaks what boto3 sends and expects for DynamoDB Streams and DynamoDB: HTTP/1.1 with
keep-alive, POST / with `X-Amz-Target: DynamoDBStreams_20120810.<Operation>` (DescribeStream,
GetShardIterator, GetRecords) or `DynamoDB_20120810.DescribeTable`, and a JSON body
(awsJson1_0). Request signatures are not checked. Errors go back as AWS sends them: status
400 (500 for InternalServerError) and `{"__type": "com.amazonaws.dynamodb.v20120810#<Code>",
"message": ...}`, so that botocore raises the ClientError with that code. What each operation
answers is FakeStreams's to say; this module only translates. FakeStreams's `before` hooks and
queued `errors` work here too, but a hook runs on the server's thread, which has no database
connection of the test's.

It is meant to cost little CPU, so that a benchmark measures the reader and not the fake: an
asyncio Protocol parses requests straight from the socket's buffer, orjson encodes, nothing is
logged per request, and a configured latency is a timer on the event loop, not a sleeping
thread.

In tests, FakeStreamsServer(fake).start() runs it in a thread (the `fake_streams_server`
fixture in tests/conftest.py). For benchmarks it runs as its own process:

    python -m tests.support.fake_streams_server --port 8123 --shards 2000 \\
        [--closed-generations 2] [--records-per-shard 10] [--latency-ms 20] \\
        [--throttle-per-shard-s 5] [--no-child-shards-filter]

It prints its URL on one line when it is ready, and runs until SIGINT or SIGTERM. The table
is named `fake`, in region us-east-1 (any credentials do). While it runs, a benchmark drives
it through a small control API, JSON in and out:

    POST /_fake/records  {"shard_id": "shardId-...", "count": 100}   write records to one open
                         {"count": 1}                                 shard, or to every open one
                         -> {"written": 102, "last_sequence_number": "..."}
    POST /_fake/split    {"shard_id": "shardId-..."}  -> {"children": ["shardId-...", "shardId-..."]}
    POST /_fake/config   {"latency_ms": 20, "throttle_per_shard_s": 5, "child_shards_filter": "ignored"}
    GET  /_fake/stats    -> {"process_time_s": ..., "requests": {"GetRecords": ..., ...},
                             "throttled": ..., "shards": ..., "open_shards": ...,
                             "get_records_intervals": {...}}
    POST /_fake/intervals/reset  -> {} (starts a new window of get_records_intervals)

`get_records_intervals` says how evenly readers poll: the time between consecutive GetRecords
calls on the same shard, over every shard, since the server started or the last reset:
{"count", "p50_s", "p99_s", "max_s", "histogram_ms": {"<bucket start, ms>": count}} in
10 ms buckets, plus "shards_called" (shards with at least one GetRecords ever) and
"stalest_s" (the longest any of them has now gone without one: a shard a reader dropped has
no interval to show, only this). Each call costs a dict update and a Counter increment.

Records are written with ApproximateCreationDateTime now, so that a reader's iterator age
means something.
"""

import argparse
import asyncio
import collections
import signal
import sys
import threading
import time

import orjson
from botocore.exceptions import ClientError

from tests.support.fake_streams import IGNORED, REJECTED, SUPPORTED, FakeStreams

STREAMS_PREFIX = "DynamoDBStreams_20120810."
DYNAMODB_PREFIX = "DynamoDB_20120810."
# X-Amz-Target: (operation, FakeStreams method)
OPERATIONS = {
    STREAMS_PREFIX + "DescribeStream": ("DescribeStream", "describe_stream"),
    STREAMS_PREFIX + "GetShardIterator": ("GetShardIterator", "get_shard_iterator"),
    STREAMS_PREFIX + "GetRecords": ("GetRecords", "get_records"),
    DYNAMODB_PREFIX + "DescribeTable": ("DescribeTable", "describe_table"),
}
# AWS answers these with a 5xx; every other error is the client's, a 400.
SERVER_ERRORS = {"InternalServerError": 500, "ServiceUnavailable": 503}
MAX_REQUEST_BYTES = 1 << 20
# Width of the buckets of the GetRecords interval histogram, in seconds.
INTERVAL_BUCKET_S = 0.01
REASONS = {
    200: b"OK", 400: b"Bad Request", 404: b"Not Found", 413: b"Payload Too Large",
    500: b"Internal Server Error", 503: b"Service Unavailable",
}


def error_body(code: str, message: str) -> bytes:
    prefix = "com.amazon.coral.validate#" if code == "ValidationException" else "com.amazonaws.dynamodb.v20120810#"
    return orjson.dumps({"__type": prefix + code, "message": message})


class FakeStreamsServer:
    """Serves `fake` on 127.0.0.1:`port` (0: any free port) until stop(). `.url` is the
    endpoint to give boto3; `.fake` and `.latency_s` may be changed while it runs."""

    def __init__(self, fake: FakeStreams, *, port: int = 0, latency_s: float = 0.0):
        self.fake = fake
        self.port = port
        self.latency_s = latency_s
        self.requests: collections.Counter[str] = collections.Counter()
        # GetRecords timing per shard (see the module docstring): when each shard was last
        # called (time.monotonic()), and the intervals between calls in INTERVAL_BUCKET_S buckets.
        self._last_get_records: dict[str, float] = {}
        self._intervals: collections.Counter[int] = collections.Counter()
        self._interval_max_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Transport] = set()
        self._stopping: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Running

    async def serve(self, ready: threading.Event | None = None) -> None:
        """Serve until stop()."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await self._loop.create_server(
            lambda: _Connection(self), "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        try:
            await self._stopping.wait()
        finally:
            self._server.close()
            # Clients keep their connections open for the next call (keep-alive): close them,
            # or the server would wait for them forever.
            for transport in list(self._connections):
                transport.close()
            await self._server.wait_closed()

    def start(self) -> "FakeStreamsServer":
        """Serve in a thread of this process; returns once the port listens."""
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self.serve(ready),), name="fake-streams", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Streams server did not start within 10 s")
        return self

    def stop(self) -> None:
        """Stop serving and closes every connection; call it from another thread than the server's."""
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # its loop has already ended
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "FakeStreamsServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # Answering

    def answer(self, method: bytes, path: bytes, target: str, body: bytes) -> tuple[int, bytes, float]:
        """(status, JSON body, seconds to wait before sending it) for one request."""
        if path.startswith(b"/_fake/"):
            return (*self._control(method, path, body), 0.0)
        operation = OPERATIONS.get(target)
        if operation is None:
            return 400, error_body("UnknownOperationException", f"Unknown operation {target!r}"), self.latency_s
        name, method = operation
        self.requests[name] += 1
        try:
            params = orjson.loads(body) if body else {}
            if name == "GetRecords":
                self._get_records_timed(str(params.get("ShardIterator", "")))
            response = getattr(self.fake, method)(**params)
        except ClientError as exc:
            error = exc.response["Error"]
            status = SERVER_ERRORS.get(error["Code"], 400)
            return status, error_body(error["Code"], error.get("Message", "")), self.latency_s
        except (TypeError, orjson.JSONDecodeError) as exc:
            # An unknown member, or a body that is not JSON: a strict service refuses both.
            return 400, error_body("SerializationException", str(exc)), self.latency_s
        return 200, orjson.dumps(response), self.latency_s

    def _get_records_timed(self, iterator: str) -> None:
        # The fake's iterators are "<shard id>|<position>" (FakeStreams.get_shard_iterator).
        shard_id = iterator.rsplit("|", 1)[0]
        now = time.monotonic()
        last = self._last_get_records.get(shard_id)
        self._last_get_records[shard_id] = now
        if last is not None:
            interval = now - last
            self._intervals[int(interval / INTERVAL_BUCKET_S)] += 1
            if interval > self._interval_max_s:
                self._interval_max_s = interval

    def intervals_reset(self) -> None:
        """Start a new window of GetRecords intervals. When each shard was last called is kept,
        so the first interval of each shard in the new window is a whole one."""
        self._intervals.clear()
        self._interval_max_s = 0.0

    def intervals_stats(self) -> dict:
        """The GetRecords intervals of the current window (see the module docstring). A
        percentile is the upper edge of the bucket it falls in, so it errs high by at most
        INTERVAL_BUCKET_S; the max is exact."""
        count = sum(self._intervals.values())
        buckets = sorted(self._intervals.items())

        def percentile(fraction: float) -> float | None:
            if not count:
                return None
            rank = fraction * count
            seen = 0
            for bucket, n in buckets:
                seen += n
                if seen >= rank:
                    return round((bucket + 1) * INTERVAL_BUCKET_S, 3)
            return round((buckets[-1][0] + 1) * INTERVAL_BUCKET_S, 3)

        now = time.monotonic()
        last_calls = list(self._last_get_records.values())
        return {
            "count": count,
            "p50_s": percentile(0.50),
            "p99_s": percentile(0.99),
            "max_s": round(self._interval_max_s, 3) if count else None,
            "histogram_ms": {str(round(bucket * INTERVAL_BUCKET_S * 1000)): n for bucket, n in buckets},
            "shards_called": len(last_calls),
            "stalest_s": round(now - min(last_calls), 3) if last_calls else None,
        }

    def _control(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        fake = self.fake
        try:
            params = orjson.loads(body) if body else {}
            if method == b"GET" and path == b"/_fake/stats":
                return 200, orjson.dumps(self.stats())
            if method == b"POST" and path == b"/_fake/intervals/reset":
                self.intervals_reset()
                return 200, b"{}"
            if method == b"POST" and path == b"/_fake/records":
                count = int(params.get("count", 1))
                if "shard_id" in params:
                    targets = [params["shard_id"]]
                else:
                    targets = [shard.shard_id for shard in list(fake.shards.values()) if not shard.closed]
                written = [fake.records_append(shard_id=shard_id, count=count) for shard_id in targets]
                last = max((batch[-1]["dynamodb"]["SequenceNumber"] for batch in written if batch), default="")
                return 200, orjson.dumps({"written": count * len(targets), "last_sequence_number": last})
            if method == b"POST" and path == b"/_fake/split":
                children = fake.split(params["shard_id"])
                return 200, orjson.dumps({"children": [child.shard_id for child in children]})
            if method == b"POST" and path == b"/_fake/config":
                if "latency_ms" in params:
                    self.latency_s = float(params["latency_ms"]) / 1000
                if "throttle_per_shard_s" in params:
                    fake.throttle_per_shard_s = int(params["throttle_per_shard_s"])
                if "child_shards_filter" in params:
                    if params["child_shards_filter"] not in (SUPPORTED, IGNORED, REJECTED):
                        raise ValueError(f"child_shards_filter is one of {SUPPORTED}, {IGNORED}, {REJECTED}")
                    fake.child_shards_filter = params["child_shards_filter"]
                return 200, orjson.dumps({
                    "latency_ms": self.latency_s * 1000,
                    "throttle_per_shard_s": fake.throttle_per_shard_s,
                    "child_shards_filter": fake.child_shards_filter,
                })
        except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
            return 400, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})
        return 404, orjson.dumps({"error": f"no {method.decode()} {path.decode()}"})

    def stats(self) -> dict:
        shards = list(self.fake.shards.values())
        return {
            "process_time_s": time.process_time(),
            "requests": dict(self.requests),
            "throttled": self.fake.throttled,
            "shards": len(shards),
            "open_shards": sum(not shard.closed for shard in shards),
            "get_records_intervals": self.intervals_stats(),
        }


class _Connection(asyncio.Protocol):
    """One keep-alive connection. Requests are answered in order; boto3 sends one at a time."""

    def __init__(self, server: FakeStreamsServer):
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closing = False
        # When the previous response goes out, so that a later, quicker one never overtakes it.
        self.sends_at = 0.0

    def connection_made(self, transport):
        self.transport = transport
        self.server._connections.add(transport)

    def connection_lost(self, exc):
        self.server._connections.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.closing:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_REQUEST_BYTES:
                    self._send(413, b"{}", close=True)
                return
            head = bytes(self.buffer[:end]).split(b"\r\n")
            method, path, _ = head[0].split(b" ", 2)
            length = 0
            target = ""
            close = False
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-amz-target":
                    target = value.strip().decode()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if length > MAX_REQUEST_BYTES:
                self._send(413, b"{}", close=True)
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            try:
                status, payload, delay = self.server.answer(method, path, target, body)
            except Exception as exc:  # noqa: BLE001 - a bug in the fake shows as AWS's 500, not a dead connection
                status, payload, delay = 500, error_body("InternalServerError", f"{type(exc).__name__}: {exc}"), 0.0
            self._send(status, payload, close=close, delay=delay)

    def _send(self, status: int, payload: bytes, *, close: bool = False, delay: float = 0.0) -> None:
        response = b"".join((
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Error")),
            b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: %d\r\n" % len(payload),
            b"Connection: close\r\n\r\n" if close else b"\r\n",
            payload,
        ))
        if close:
            self.closing = True
        loop = self.server._loop
        now = loop.time()
        at = max(now + delay, self.sends_at)
        if at <= now:
            self._write(response, close)
        else:
            self.sends_at = at
            loop.call_at(at, self._write, response, close)

    def _write(self, response: bytes, close: bool) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(response)
        if close:
            self.transport.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fake_streams_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0 for any free port (the URL printed says which)")
    parser.add_argument("--shards", type=int, default=1, help="open shards")
    parser.add_argument("--closed-generations", type=int, default=0, help="closed ancestors above each open shard")
    parser.add_argument("--records-per-shard", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API call")
    parser.add_argument(
        "--throttle-per-shard-s", type=int, default=5,
        help="GetRecords a second on one shard before LimitExceededException, 5 as AWS; 0 for no limit",
    )
    parser.add_argument("--child-shards-filter", action=argparse.BooleanOptionalAction, default=True,
                        help="answer DescribeStream's ShardFilter; --no-child-shards-filter ignores it, "
                             "as DynamoDB Local before 3.2.0 does")
    parser.add_argument("--keep-calls", type=int, default=10_000, help="calls kept for inspection")
    args = parser.parse_args(argv)

    started = time.monotonic()
    fake = FakeStreams.generated(
        open_shards=args.shards,
        closed_generations=args.closed_generations,
        records_per_shard=args.records_per_shard,
        throttle_per_shard_s=args.throttle_per_shard_s,
        child_shards_filter=SUPPORTED if args.child_shards_filter else IGNORED,
        keep_calls=args.keep_calls,
    )
    server = FakeStreamsServer(fake, port=args.port, latency_s=args.latency_ms / 1000)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        ready = threading.Event()
        serving = asyncio.ensure_future(server.serve(ready))
        while not ready.is_set():
            if serving.done():
                serving.result()  # it failed to listen: say why
            await asyncio.sleep(0.01)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server._stopping.set)
        print(server.url, flush=True)
        print(f"{len(fake.shards)} shards in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        await serving

    asyncio.run(run())


if __name__ == "__main__":
    main()

"""Fan-out: 100 logged-in websocket clients on /ws/feed/ while items are written at 200 a second.

Everything on the path is real: put_item on DynamoDB Local, a Celery worker reading the
shard (GetRecords about four times a second) and saving each batch in PostgreSQL, its one
`records.batch` message per batch on the Redis channel layer, daphne's FeedConsumer filtering
and sending it to every socket. The clients are `websockets` connections in this process, on
one asyncio loop; the writer is a process of its own (bench.live). Each item's key carries
the time just before its put_item, so a row's delay is its arrival time minus that.

The clients log in as a browser does: the bench user's session cookie, and the server's own
origin as their Origin header (config/origins.py refuses any other). A client counts as served when it received every
written record; one whose consumer died in daphne (fanout_server_exceptions names why) is not.

One more listener joins the source's channel group directly, as bench.run's latency
benchmark does: its delay is the pipeline up to the worker's push, and the clients' delay
beyond it is what daphne and the websockets add.
"""

import asyncio
import json
import time

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench import live, writer
from bench.common import percentile

CLIENTS = 100
RATE_PER_S = 200
SECONDS = 15
WARMUP_WRITES = 40
DRAIN_TIMEOUT_S = 20
CONNECT_TIMEOUT_S = 60
# Browsers arrive spread out (feed.js reconnects with jitter), not all in the same millisecond:
# ten handshakes at a time, and a refused one is tried again, as feed.js would.
CONNECT_CONCURRENCY = 10
CONNECT_ATTEMPTS = 3


class Client:
    def __init__(self, number: int):
        self.number = number
        self.received: dict[str, float] = {}
        self.messages = 0
        self.refused = 0
        self.error = ""


async def _connect(url: str, headers: dict, source_id: int, client: Client, gate: asyncio.Semaphore):
    async with gate:
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                socket = await connect(url, additional_headers=headers, max_size=None, open_timeout=CONNECT_TIMEOUT_S)
                break
            except InvalidStatus:
                client.refused += 1
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5)
        await socket.send(json.dumps({"type": "subscribe", "filter": {"source": [source_id]}}))
        while True:
            message = orjson.loads(await socket.recv())
            if message.get("type") == "subscribed":
                return socket
            if message.get("type") == "error":
                raise RuntimeError(f"client {client.number}: {message}")


async def _receive(socket, client: Client) -> None:
    try:
        async for raw in socket:
            now = time.time()
            message = orjson.loads(raw)
            if message.get("type") != "records":
                continue
            client.messages += 1
            for row in message["records"]:
                client.received.setdefault(row["partition_key"], now)
    except ConnectionClosed as exc:
        client.error = f"closed: {exc}"


async def _wait_for(clients: list[Client], keys: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(keys <= client.received.keys() for client in clients):
            return
        await asyncio.sleep(0.1)


async def _run(stack, cookie: tuple[str, str]) -> dict:
    url = f"ws://127.0.0.1:{stack.port}/ws/feed/"
    headers = {"Cookie": f"{cookie[0]}={cookie[1]}", "Origin": stack.base_url}
    clients = [Client(number) for number in range(CLIENTS)]
    connect_started = time.monotonic()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sockets = await asyncio.gather(*(_connect(url, headers, stack.source.pk, client, gate) for client in clients))
    connect_s = time.monotonic() - connect_started
    receivers = [asyncio.create_task(_receive(socket, client)) for socket, client in zip(sockets, clients)]
    stop = asyncio.Event()
    pushed: dict[str, float] = {}
    listener = asyncio.create_task(live.listen_group(stack.source.group_name, pushed, stop))
    # An idle shard is polled once a second; a few writes first bring the reader to its
    # working cadence, as in the latency benchmark, and prove every socket is subscribed.
    warm = await writer.write_items(stack, prefix="fanwarm", count=WARMUP_WRITES, rate_per_s=20)
    await _wait_for(clients, {w["key"] for w in warm}, DRAIN_TIMEOUT_S)
    writes = await writer.write_items(stack, prefix="fan", count=RATE_PER_S * SECONDS, rate_per_s=RATE_PER_S)
    keys = {w["key"] for w in writes}
    drain_started = time.monotonic()
    await _wait_for(clients, keys, DRAIN_TIMEOUT_S)
    drain_s = time.monotonic() - drain_started
    stop.set()
    await listener
    for socket in sockets:
        await socket.close()
    await asyncio.gather(*receivers, return_exceptions=True)

    put_at = {w["key"]: w["put_at"] for w in writes}
    delays = [
        (client.received[key] - put_at[key]) * 1000 for client in clients for key in keys if key in client.received
    ]
    push_delays = [(pushed[key] - put_at[key]) * 1000 for key in keys if key in pushed]
    ok = [client for client in clients if keys <= client.received.keys()]
    missing = sum(len(keys - client.received.keys()) for client in clients)
    per_client = [[(c.received[k] - put_at[k]) * 1000 for k in keys if k in c.received] for c in clients]
    per_client_p99 = sorted(percentile(values, 0.99) for values in per_client if values)
    result = {
        "fanout_clients": CLIENTS,
        "fanout_clients_ok": len(ok),
        "fanout_records": len(writes),
        # What the writer sustained: below RATE_PER_S when this machine cannot put that many.
        "fanout_rate_per_s": writer.writer_summary(writes).get("rate_per_s"),
        "fanout_deliveries_missing": missing,
        "fanout_p50_ms": round(percentile(delays, 0.50), 1) if delays else None,
        "fanout_p95_ms": round(percentile(delays, 0.95), 1) if delays else None,
        "fanout_p99_ms": round(percentile(delays, 0.99), 1) if delays else None,
        "fanout_max_ms": round(max(delays), 1) if delays else None,
        "fanout_worst_client_p99_ms": round(per_client_p99[-1], 1) if per_client_p99 else None,
        "fanout_push_p50_ms": round(percentile(push_delays, 0.50), 1) if push_delays else None,
        "fanout_push_p99_ms": round(percentile(push_delays, 0.99), 1) if push_delays else None,
        "fanout_messages_per_client": round(sum(c.messages for c in clients) / CLIENTS, 1),
        "fanout_connect_s": round(connect_s, 1),
        "fanout_handshakes_refused": sum(c.refused for c in clients),
        "fanout_drain_s": round(drain_s, 1),
        "fanout_writer": writer.writer_summary(writes),
        "fanout_clients_closed": sum(1 for c in clients if c.error),
        "fanout_client_errors": sorted({c.error for c in clients if c.error})[:5],
        # Consumers that died inside daphne (their sockets close): see test-artifacts/bench-daphne.log.
        "fanout_server_exceptions": live.server_exceptions(),
    }
    return result


def bench_fanout() -> dict:
    cookie = live.session_cookie()
    with live.running_stack("fanout") as stack:
        return asyncio.run(_run(stack, cookie))

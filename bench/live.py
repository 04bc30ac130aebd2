"""The whole of Shardwatch running for a benchmark: a watched DynamoDB Local table, a Celery
worker and beat reading it, and daphne serving the ASGI application (HTTP and websockets),
each a real process on the bench settings, the bench database and the Redis channel layer.
The writer process that puts items into the table is bench.writer."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from bench import workload
from bench.common import ARTIFACTS, ROOT, reset_tables
from streams.models import Shard
from streams.sources import source_add
from tests.support.processes import Processes, database_url

SERVER_START_TIMEOUT_S = 30
FIRST_POLL_TIMEOUT_S = 60


@dataclass
class Stack:
    table: str
    source: object  # streams.models.StreamSource
    base_url: str
    port: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_daphne(port: int) -> subprocess.Popen:
    log = open(ARTIFACTS / "bench-daphne.log", "wb")
    # The same command as the Procfile's web process. os.environ carries this run's
    # CHANNEL_PREFIX and CELERY_QUEUE (bench/settings.py), so daphne, the worker and this
    # process share one channel layer.
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "DATABASE_URL": database_url()},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}; see test-artifacts/bench-daphne.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    _stop(process)
    raise RuntimeError(f"daphne did not listen on {port} within {SERVER_START_TIMEOUT_S} s")


def server_exceptions() -> dict[str, int]:
    """"Exception inside application" in this run's daphne log, counted by message."""
    counts: dict[str, int] = {}
    path = ARTIFACTS / "bench-daphne.log"
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            if "Exception inside application:" in line:
                message = line.split("Exception inside application:", 1)[1].strip()
                counts[message] = counts.get(message, 0) + 1
    return counts


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@contextmanager
def running_stack(name: str):
    """Empty tables, a new watched table, worker, beat and daphne; all stopped on exit."""
    reset_tables()
    table = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    workload.create_table(table)
    source = source_add(table_name=table, region="us-east-1")
    processes = Processes(DJANGO_SETTINGS_MODULE="bench.settings")
    daphne = None
    try:
        processes.worker(f"bench-{name}", concurrency=2)
        processes.reader(f"bench-{name}-reader")
        processes.beat(ROOT / "var" / f"bench-beat-{os.getpid()}")
        port = _free_port()
        daphne = _start_daphne(port)
        # The first dispatch runs within SHARDWATCH_DISPATCH_INTERVAL_S of beat starting.
        deadline = time.monotonic() + FIRST_POLL_TIMEOUT_S
        while not Shard.objects.filter(stream__source=source, last_polled_at__isnull=False).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no worker polled the shard within {FIRST_POLL_TIMEOUT_S} s; see test-artifacts/bench-{name}.log")
            time.sleep(0.2)
        yield Stack(table=table, source=source, base_url=f"http://127.0.0.1:{port}", port=port)
    finally:
        if daphne is not None:
            _stop(daphne)
        processes.stop_all()


def session_cookie() -> tuple[str, str]:
    """(cookie name, value) of a logged-in session for the bench user, stored in the bench
    database where daphne's AuthMiddlewareStack finds it."""
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value


async def listen_group(group: str, arrived: dict[str, float], stop: asyncio.Event) -> None:
    """Join the group as the worker's pushes see it, noting when each item's row first arrives."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    try:
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(layer.receive(channel), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            for row in message["records"]:
                arrived.setdefault(row["partition_key"], now)
    finally:
        await layer.group_discard(group, channel)

"""Heartbeats: each Celery worker writes its Heartbeat row every SHARDWATCH_HEARTBEAT_S from a
thread of its main process, and beat from its scheduler's loop, so /readyz and the "no worker
alive" alert can tell a live process from a dead one without asking the broker.

Beat's heartbeat comes from HeartbeatScheduler.tick (settings.CELERY_BEAT_SCHEDULER), on the
thread that schedules, never from a thread of its own: a beat whose scheduling hangs (a wedged
schedule store, a publish that blocks) stops beating although its process lives, so a fresh
beat heartbeat means beat's loop has run, as /readyz's "beat has run" asks. It does not mean
that what beat sent arrived: celery's Scheduler.apply_entry logs a publish that fails (a broker
it cannot reach) and ticks on, so beat keeps beating; /readyz's Redis check (the broker) covers
that case. Another scheduler class writes none, and /readyz says beat is down.

A Celery worker does one of two jobs, told apart by the queues it consumes (Heartbeat.queues):
a `reader` consumes SHARDWATCH_READER_QUEUE (the stream readers); a `worker` consumes any
other queue (triggers, discovery, dispatch, retention, alert sends). A process that consumes
both is alive for both. Every check and metric reads the roles of ROLES through
heartbeats_by_role, so a live reader never passes for a live worker, nor the reverse.

The thread runs in the worker's main process, not its pool children: a worker whose pool is
busy with long tasks is still alive. A clean shutdown deletes the row; a killed process leaves
it to go stale, which is what the checks look for.
"""

import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta

from celery import signals
from celery.beat import PersistentScheduler
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from meters.models import Heartbeat
from meters.store import meters_flush

log = logging.getLogger(__name__)

# "Alive" is a heartbeat at most this old: the figure for /readyz, used by /readyz
# (dashboard.health), /metrics' shardwatch_processes_alive (dashboard.metrics), and, as a
# literal that tests/config/test_prometheus.py checks, deploy/prometheus/rules.yml. Each
# process writes one every SHARDWATCH_HEARTBEAT_S (10 s), so two may be missed.
HEARTBEAT_ALIVE_S = 30.0

# What a process can be alive for: the jobs above, and Celery beat.
ROLES = ("worker", "reader", "beat")

_stop = threading.Event()
_process: str | None = None


def heartbeat_beat(*, process: str, role: str, queues: str = "") -> None:
    """Record that `process` ("worker@host:pid") of `role` (Heartbeat.Role) is alive now."""
    now = timezone.now()
    updated = Heartbeat.objects.filter(process=process).update(seen_at=now, role=role, queues=queues)
    if not updated:
        Heartbeat.objects.get_or_create(process=process, defaults={"role": role, "queues": queues, "seen_at": now})


def heartbeat_roles(*, role: str, queues: str) -> set[str]:
    """The roles of ROLES that a process serves: beat's row (Heartbeat.Role.BEAT) serves
    "beat"; a worker's serves "reader" when `queues` (comma-separated) holds
    SHARDWATCH_READER_QUEUE, and "worker" when it holds any other queue, or none is known."""
    if role == Heartbeat.Role.BEAT:
        return {"beat"}
    consumed = {queue for queue in queues.split(",") if queue}
    served = set()
    if settings.SHARDWATCH_READER_QUEUE in consumed:
        served.add("reader")
    if not consumed or consumed - {settings.SHARDWATCH_READER_QUEUE}:
        served.add("worker")
    return served


def heartbeats_by_role(*, now: datetime, alive_within_s: float = HEARTBEAT_ALIVE_S) -> dict[str, dict]:
    """Per role of ROLES (every one, see heartbeat_roles): {"seen_at": the newest heartbeat of
    any process serving the role (an aware datetime, None when none), "alive": how many of
    them beat within `alive_within_s` seconds of `now`}. One query; the rows are one per
    running process, a few dozen at most."""
    since = now - timedelta(seconds=alive_within_s)
    summary = {role: {"seen_at": None, "alive": 0} for role in ROLES}
    for role, queues, seen_at in Heartbeat.objects.values_list("role", "queues", "seen_at"):
        for served in heartbeat_roles(role=role, queues=queues):
            entry = summary[served]
            if entry["seen_at"] is None or seen_at > entry["seen_at"]:
                entry["seen_at"] = seen_at
            entry["alive"] += seen_at >= since
    return summary


def heartbeats_prune(*, older_than_s: float) -> int:
    """Delete the rows of processes silent for more than `older_than_s` seconds; returns how many."""
    deleted, _ = Heartbeat.objects.filter(seen_at__lt=timezone.now() - timedelta(seconds=older_than_s)).delete()
    return deleted


def _loop(role: str, queues: str) -> None:
    while True:
        try:
            close_old_connections()
            heartbeat_beat(process=_process, role=role, queues=queues)
        except Exception:
            log.warning("heartbeat: could not write %s's heartbeat", _process, exc_info=True)
        finally:
            connection.close()
        if _stop.wait(settings.SHARDWATCH_HEARTBEAT_S):
            return


def _start(*, name: str, role: str, queues: str = "") -> None:
    global _process
    _process = f"{name}:{os.getpid()}"
    _stop.clear()
    threading.Thread(target=_loop, args=(role, queues), name="heartbeat", daemon=True).start()


@signals.worker_ready.connect
def _worker_ready(sender=None, **kwargs):
    hostname = getattr(sender, "hostname", None) or f"celery@{socket.gethostname()}"
    try:
        queues = ",".join(sorted(sender.app.amqp.queues.consume_from))
    except Exception:
        queues = ""
    _start(name=hostname, role=Heartbeat.Role.WORKER, queues=queues)


class HeartbeatScheduler(PersistentScheduler):
    """Celery's default scheduler (the shelve file of --schedule), which writes beat's
    heartbeat after a pass of its loop, at most every SHARDWATCH_HEARTBEAT_S. Celery beat calls
    tick() (celery.beat.Service.start), runs the entries due, then sleeps for what tick()
    returned: the loop interval is capped at SHARDWATCH_HEARTBEAT_S so a quiet schedule still
    ticks, and beats, that often."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_interval = min(self.max_interval, settings.SHARDWATCH_HEARTBEAT_S)
        self.heartbeat_process = f"beat@{socket.gethostname()}:{os.getpid()}"
        self.heartbeat_at: float | None = None

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        at = time.monotonic()
        if self.heartbeat_at is None or at - self.heartbeat_at >= settings.SHARDWATCH_HEARTBEAT_S:
            self.heartbeat_at = at
            try:
                close_old_connections()
                heartbeat_beat(process=self.heartbeat_process, role=Heartbeat.Role.BEAT)
            except Exception:
                # A database that is down must not stop the schedule; /readyz names the database.
                log.warning("heartbeat: could not write %s's heartbeat", self.heartbeat_process, exc_info=True)
            finally:
                connection.close()
        return interval


@signals.worker_shutdown.connect
def _worker_shutdown(**kwargs):
    _stop.set()
    if _process:
        try:
            close_old_connections()
            Heartbeat.objects.filter(process=_process).delete()
        except Exception:
            log.warning("heartbeat: could not remove %s's row", _process, exc_info=True)


@signals.worker_process_shutdown.connect
def _pool_process_shutdown(**kwargs):
    # A pool child may exit with os._exit, which skips atexit: flush its counts here.
    try:
        close_old_connections()
        meters_flush()
    except Exception:
        log.warning("meters: flush at pool process exit failed", exc_info=True)

"""Celery tasks of the stream readers: thin adapters that take ids and call one function each.

The registered names of the older tasks are the ones they had when they lived in
workers/tasks.py (`name="workers.tasks.discover_all"` and so on): messages already queued during
a deploy, and the beat schedule in config/settings.py, still find them.

Readers run on a queue of their own (settings.SHARDWATCH_READER_QUEUE), which the Procfile's
`reader` worker consumes and the `worker` process does not: a reader holds its worker process for
SHARDWATCH_READER_RUN_S, so the reader worker's --concurrency is the bound on how many process
slots readers take, and triggers, discovery, dispatch and retention never wait behind them.
"""

import logging
import mmap
import signal
import threading
from contextlib import contextmanager

from billiard.process import current_process
from celery import current_app, shared_task
from celery.signals import worker_shutting_down
from django.conf import settings
from django.db import close_old_connections, transaction

from streams import retention, sources
from streams.models import ChangeRecord, Shard, StreamSource
from streams.reader import Reader
from streams.signals import records_expired

log = logging.getLogger(__name__)


@shared_task(ignore_result=True, name="workers.tasks.discover_source")
def discover_source(source_id: int) -> None:
    try:
        sources.source_discover(source_id=source_id)
    except StreamSource.DoesNotExist:
        return


@shared_task(ignore_result=True, name="workers.tasks.discover_all")
def discover_all() -> None:
    for source_id in StreamSource.objects.filter(enabled=True).values_list("pk", flat=True):
        discover_source.delay(source_id)


@shared_task(ignore_result=True, name="streams.tasks.discover_children")
def discover_children(shard_id: int) -> None:
    """Find the children of a shard that was just read to its end (DescribeStream with
    ShardFilter CHILD_SHARDS; the periodic discovery stays the backstop)."""
    try:
        sources.shard_children_discover(shard_id=shard_id)
    except Shard.DoesNotExist:
        return


# Set in the worker's main process when it begins a warm shutdown (SIGTERM, or the first
# Ctrl-C). The mapping is anonymous and shared, made when this module is imported: Celery
# imports task modules in the main process before it forks the pool, so every pool process
# sees the same byte, and a reader there stops within a tenth of a second.
_worker_stopping = mmap.mmap(-1, 1)


@worker_shutting_down.connect
def _on_worker_shutting_down(**kwargs) -> None:
    _worker_stopping[0] = 1


@contextmanager
def _stop_on_sigterm():
    """Yield a function that says whether the reader should stop: the worker is shutting down,
    or this pool process itself got SIGTERM (a process manager that signals the whole process
    group, as systemd and honcho do). The handler is only installed while the reader runs."""
    received = threading.Event()
    previous = None
    # Only in a pool process: in the worker's main process (--pool=solo) SIGTERM is Celery's own
    # warm shutdown, which reaches the reader through worker_shutting_down.
    in_pool_process = current_process().name != "MainProcess"
    if in_pool_process and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.set())
    try:
        yield lambda: received.is_set() or _worker_stopping[0] == 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def readers_top_up() -> None:
    """Keep one reader task waiting in the readers' queue, so that a reader process slot that
    frees (a reader whose time is up, a worker that joins) starts a reader at once.

    Counts the messages in the queue with a passive declare, which kombu answers on every
    broker it supports; a queue that does not exist yet counts as empty."""
    name = settings.SHARDWATCH_READER_QUEUE
    with current_app.connection_for_write() as connection:
        try:
            waiting = connection.default_channel.queue_declare(queue=name, passive=True).message_count
        except connection.channel_errors:
            waiting = 0
        if not waiting:
            read_shards.apply_async(connection=connection)


@shared_task(ignore_result=True, name="workers.tasks.dispatch_readers")
def dispatch_readers() -> None:
    """Keep the readers' queue stocked (see readers_top_up)."""
    readers_top_up()


@shared_task(
    ignore_result=True,
    name="streams.tasks.read_shards",
    # Acknowledged when it starts: a reader lost with its worker is replaced by the next top-up,
    # while an unacknowledged one would come back after the broker's visibility timeout as a
    # second reader.
    acks_late=False,
    soft_time_limit=settings.SHARDWATCH_READER_RUN_S + 60,
    time_limit=settings.SHARDWATCH_READER_RUN_S + 90,
)
def read_shards() -> None:
    """Hold and read a share of all readable shards for SHARDWATCH_READER_RUN_S, or until the
    worker shuts down; then release them for the other readers and the next reader task."""
    close_old_connections()
    readers_top_up()

    def on_shard_end(source_id: int, shard_id: int) -> None:
        transaction.on_commit(lambda: discover_children.delay(shard_id))

    with _stop_on_sigterm() as should_stop:
        reader = Reader(threads=settings.SHARDWATCH_READER_THREADS, on_shard_end=on_shard_end)
        stats = reader.run(run_s=settings.SHARDWATCH_READER_RUN_S, should_stop=should_stop)
    log.info("reader %s done: %s", reader.owner, stats)
    close_old_connections()


@shared_task(ignore_result=True, name="workers.tasks.read_shard")
def read_shard(*args, **kwargs) -> None:
    """A one-poll task that versions before the long-running readers queued. It does nothing:
    the lease it carries runs out by itself, and a reader takes the shard over."""


@shared_task(ignore_result=True, name="workers.tasks.enforce_retention")
def enforce_retention() -> None:
    """Delete records past their source's retention, then let the apps above delete what was
    built on them (streams.signals.records_expired; workers deletes trigger invocations)."""
    retention.records_expire()
    records_expired.send(sender=ChangeRecord)

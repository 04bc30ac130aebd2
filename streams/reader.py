"""A stream reader: one long-running loop that holds many shard leases and polls each shard at
its own cadence, in the manner of a KCL worker.

What must stay true:
- A reader holds all its leases under one owner token. It renews them in one UPDATE every
  lease/3, and the rows that carry its token are the shards it holds: at every renewal it reads
  them again (with their stream and source), so a shard taken over after an expiry, taken for
  balance, finished or disabled from outside is dropped within lease/3 (a shard taken for
  balance within a balance interval, when the count of its rows falls short). A poll of a
  dropped shard still in flight saves nothing: records_save is conditional on the token.
- An empty poll writes nothing. The database is written when records arrive (records and their
  checkpoint in one transaction), when leases are renewed, taken or released, when a read fails,
  and when a LATEST shard that has never had a record keeps its position (streams.reading).
- GetShardIterator and GetRecords run on a bounded thread pool and touch no database; everything
  that does runs on the reader's own thread, so a reader holds one database connection.
- No shard is polled more often than DynamoDB allows (reading.MIN_INTERVAL_S), and no shard has
  more than one call in flight.
- Shards spread over the readers that are alive: each reader aims at ceil(readable shards /
  readers), counting the owners of unexpired leases and itself. It takes free shards first, and
  takes from the reader holding the most only when that reader holds more than its share.
- A reader that stops (its time is up, SIGTERM) releases its leases in one UPDATE, after
  keeping the positions of LATEST shards without a record, so the others take them at their
  next balance: nothing is lost, and records read twice are ignored by the unique key. Calls
  still in flight then are not waited for; their results are dropped.

Why a thread pool and not aiobotocore: an idle reader's work is the botocore calls, and a
pool adds little to them. Measured here on the fake Streams endpoint with 500 idle shards
(2 cores, shared): 1.30 ms of CPU per poll through the pool against 0.98 ms calling
shard_fetch and shard_apply one after another on one thread; 1, 2, 4, 8, 16 or 32 threads
made no difference beyond noise (1.30-1.44 ms). aiobotocore was not measured: it pins botocore
to a narrow range (3.10.0: botocore<1.43.118) that the boto3 Shardwatch pins is past, so it
could not be installed beside it, and would hold back every boto3 upgrade.
"""

import heapq
import logging
import math
import os
import queue
import random
import socket
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, models
from django.utils import timezone

from meters.logcontext import log_context
from streams.leases import unleased_condition
from streams.models import Shard
from streams.reading import Fetched, ShardReading, shard_apply, shard_fetch

log = logging.getLogger(__name__)

# How long the loop sleeps at most before it looks at its stop condition again.
STOP_CHECK_S = 0.1


def reader_name() -> str:
    """host:pid of this process, as the Streams page shows who reads a shard."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _exception_type(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


@dataclass
class ReaderStats:
    """What one run of a reader did, for its caller and for tests."""

    polls: int = 0
    saved: int = 0
    errors: int = 0
    taken: int = 0
    lost: int = 0
    released: int = 0


class Reader:
    """Holds a set of shard leases under one owner token and polls them.

    `on_shard_end(source_id, shard_id)` is called (on the reader's thread, inside no
    transaction) for every shard read to its end, so that the caller can find its children.
    """

    def __init__(self, *, threads: int, on_shard_end: Callable[[int, int], None] | None = None):
        self.owner = f"{reader_name()}/{os.urandom(6).hex()}"
        self.name = reader_name()
        self.readings: dict[int, ShardReading] = {}
        self.stats = ReaderStats()
        self.on_shard_end = on_shard_end or (lambda source_id, shard_id: None)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shardwatch-getrecords")
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        # Each shard's next poll time; the heap may hold older entries for a shard, and an
        # entry counts only while it matches this.
        self._due_at: dict[int, float] = {}
        self._due: list[tuple[float, int]] = []
        self._in_flight: set[int] = set()
        self._lease_s = settings.SHARDWATCH_LEASE_S

    # Leases -----------------------------------------------------------------------------

    def leases_renew(self) -> None:
        """Renew every lease in one UPDATE, then read the held rows again: drop the shards this
        reader no longer holds, or that were finished or disabled meanwhile, and pick up rows it
        holds but has no reading for (after a database error)."""
        now = timezone.now()
        Shard.objects.leases_renew(
            owner=self.owner, until=now + timedelta(seconds=self._lease_s), last_polled_at=now,
            **self._caught_up_fields(),
        )
        self._readings_refresh()

    def _caught_up_fields(self) -> dict:
        """The renewal's writes of an iterator age of 0 for the shards whose latest poll returned
        nothing, each as of its own poll time rounded down to the second (streams.lag: never a
        lag too low). One CASE branch per second, so the UPDATE stays small however many shards
        are held. A shard whose next call is in flight (running, or queued behind busy threads)
        is written too, as of its last poll: that time stays put while the call is out, so the
        figure of a call that hangs for the client's whole timeout grows, and a shard's own time
        never stands for another's."""
        by_second: dict[datetime, list[int]] = {}
        for pk, reading in self.readings.items():
            if reading.caught_up_at:
                by_second.setdefault(reading.caught_up_at.replace(microsecond=0), []).append(pk)
        if not by_second:
            return {}
        ids = [pk for pks in by_second.values() for pk in pks]
        return {
            "iterator_age_s": models.Case(
                models.When(pk__in=ids, then=models.Value(0.0)), default=models.F("iterator_age_s")
            ),
            "iterator_age_at": models.Case(
                *(models.When(pk__in=pks, then=models.Value(at)) for at, pks in by_second.items()),
                default=models.F("iterator_age_at"),
            ),
        }

    def _readings_refresh(self) -> None:
        rows = {row.pk: row for row in Shard.objects.held_by(self.owner).select_related("stream__source")}
        for pk in list(self.readings):
            if pk not in rows:
                del self.readings[pk]
                self.stats.lost += 1
        done = []
        for pk, row in rows.items():
            if row.state == Shard.State.FINISHED or not row.stream.source.enabled:
                done.append(pk)
                self.readings.pop(pk, None)
                continue
            reading = self.readings.get(pk)
            if reading is None:
                self.readings[pk] = ShardReading(shard=row)
                self._schedule(pk, time.monotonic())
            else:
                reading.shard = row
        if done:
            Shard.objects.filter(pk__in=done, lease_owner=self.owner).update(lease_owner="", lease_expires_at=None)

    def leases_balance(self) -> int:
        """Take this reader's share of the readable shards. Returns how many it took.

        Share = ceil(readable shards / readers), where the readers are the owners of unexpired
        leases on readable shards, and this one. Free shards (never leased, released, or whose
        holder stopped renewing) are taken first, picked at random so that readers starting
        together collide little; then, when none are free, shards of the reader that holds the
        most, if it holds more than its share (KCL's lease stealing).
        """
        now = timezone.now()
        live_owner = models.Case(
            models.When(unleased_condition(now=now), then=models.Value("")), default=models.F("lease_owner")
        )
        counts = dict(
            Shard.objects.readable().annotate(live_owner=live_owner).order_by()
            .values_list("live_owner").annotate(n=models.Count("pk"))
        )
        total = sum(counts.values())
        free = counts.pop("", 0)
        if counts.pop(self.owner, 0) != len(self.readings):
            # Another reader took shards from this one for balance (or a source was disabled):
            # stop polling them now rather than at the next renewal, so that a shard has two
            # Shardwatch readers for a second at most.
            self._readings_refresh()
        share = math.ceil(total / (len(counts) + 1)) if total else 0
        wanted = share - len(self.readings)
        if wanted <= 0:
            return 0
        until = now + timedelta(seconds=self._lease_s)
        if free:
            candidates = list(Shard.objects.readable().unleased(now=now).order_by().values_list("pk", flat=True))
            pks = random.sample(candidates, min(wanted, len(candidates)))
            taken = Shard.objects.leases_take(
                pks, owner=self.owner, now=now, until=until, last_polled_by=self.name, last_polled_at=now
            )
        else:
            victim, held = max(counts.items(), key=lambda item: item[1], default=("", 0))
            surplus = held - share
            if surplus <= 0:
                return 0
            pks = list(
                Shard.objects.readable().filter(lease_owner=victim).order_by("?").values_list("pk", flat=True)[
                    : min(wanted, surplus)
                ]
            )
            taken = Shard.objects.leases_take(
                pks, owner=self.owner, now=now, until=until, from_owner=victim, last_polled_by=self.name, last_polled_at=now
            )
        if taken:
            self.stats.taken += taken
            self._readings_refresh()
        return taken

    def leases_release(self) -> int:
        """Give up every lease, after keeping the positions of LATEST shards that have had no
        record (so the next holder resumes there, not at the newest record)."""
        now = timezone.now()
        for reading in self.readings.values():
            shard = reading.shard
            if reading.iterator and not shard.checkpoint and shard.initial_position == "LATEST":
                Shard.objects.lease_write(
                    shard.pk, owner=self.owner, resume_iterator=reading.iterator, resume_iterator_at=now
                )
        released = Shard.objects.leases_release(owner=self.owner)
        self.stats.released += released
        self.readings.clear()
        return released

    # Polling ----------------------------------------------------------------------------

    def _schedule(self, pk: int, at: float) -> None:
        self._due_at[pk] = at
        heapq.heappush(self._due, (at, pk))

    def _submit_due(self, now_mono: float) -> None:
        now = None
        while self._due and self._due[0][0] <= now_mono:
            at, pk = heapq.heappop(self._due)
            reading = self.readings.get(pk)
            if reading is None or self._due_at.get(pk) != at:
                continue  # dropped or rescheduled since
            del self._due_at[pk]
            if pk in self._in_flight:
                continue  # a reading that replaced one with a call out: _apply schedules it
            now = now or timezone.now()
            self._in_flight.add(pk)
            self._pool.submit(self._fetch, reading, now)

    @staticmethod
    def _log_context(reading: ShardReading):
        return log_context(source=reading.shard.stream.source_id, shard=reading.shard.shard_id)

    def _fetch(self, reading: ShardReading, now) -> None:
        # On a pool thread, which has a context of its own: set here, not by the submitter.
        with self._log_context(reading):
            try:
                fetched = shard_fetch(shard=reading.shard, iterator=reading.iterator, now=now)
            except Exception as exc:  # never lose the slot: a fetch that raised is a failed read
                fetched = Fetched(started=time.monotonic(), error=exc)
        self._done.put((reading, fetched))

    def _apply(self, reading: ShardReading, fetched: Fetched) -> None:
        with self._log_context(reading):
            self._apply_in_context(reading, fetched)

    def _apply_in_context(self, reading: ShardReading, fetched: Fetched) -> None:
        pk = reading.shard.pk
        self._in_flight.discard(pk)
        current = self.readings.get(pk)
        if current is not reading:
            # Lost, or lost and taken again, while the call was in flight: its result is not
            # ours. A reading that replaced it was not polled while this call was out.
            if current is not None and pk not in self._due_at:
                self._schedule(pk, time.monotonic())
            return
        self.stats.polls += 1
        try:
            poll = shard_apply(reading=reading, owner=self.owner, fetched=fetched, now=timezone.now())
        except Exception as exc:
            # What was written is unknown (a database error, a broker that refused the message
            # announcing the batch): forget the shard, so that the next renewal reads its row and
            # checkpoint again and reading resumes from what was committed. The other shards
            # this reader holds go on. Logged without the exception's message: a database's
            # quotes the row it refused, item data included. Where it failed is in the frames.
            log.error(
                "shard %s: acting on a read failed after sequence number %s (%s); reading it again from its checkpoint\n%s",
                reading.shard.shard_id, reading.shard.checkpoint or "(none)", _exception_type(exc),
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            self.stats.errors += 1
            del self.readings[pk]
            close_old_connections()
            return
        self.stats.saved += poll.saved
        self.stats.errors += bool(fetched.error)
        if poll.rediscover is not None:
            self.on_shard_end(poll.rediscover, pk)
        if not poll.keep_reading:
            self.readings.pop(pk, None)
            return
        self._schedule(pk, time.monotonic() + poll.delay_s)

    def polls_wait(self, *, timeout_s: float) -> int:
        """Submit every shard that is due, then apply results as they come back, for up to
        `timeout_s` (or until the first result when no more are due). Returns how many
        results were applied."""
        deadline = time.monotonic() + timeout_s
        self._submit_due(time.monotonic())
        applied = 0
        while True:
            now_mono = time.monotonic()
            if now_mono >= deadline:
                # Results may keep coming faster than they are applied (shards catching up):
                # the caller still renews, balances and looks at its stop condition on time.
                return applied
            next_due = self._due[0][0] if self._due else math.inf
            wait_s = min(deadline, next_due) - now_mono
            try:
                reading, fetched = self._done.get(timeout=wait_s) if wait_s > 0 else self._done.get_nowait()
            except queue.Empty:
                return applied
            self._apply(reading, fetched)
            applied += 1
            self._submit_due(time.monotonic())

    def polls_drain(self) -> None:
        """Wait for the calls in flight and apply their results."""
        while self._in_flight:
            reading, fetched = self._done.get()
            self._apply(reading, fetched)

    def polls_round(self) -> int:
        """Poll every held shard once, now, whatever its cadence, and apply the results.
        Returns how many records were saved. For callers that drive a reader step by step
        (tests); `run` keeps each shard's own cadence."""
        saved = self.stats.saved
        now_mono = time.monotonic()
        for pk in self.readings:
            self._schedule(pk, now_mono)
        self._submit_due(now_mono)
        self.polls_drain()
        return self.stats.saved - saved

    def close(self) -> None:
        """Release every lease and stop the thread pool, without waiting for the calls in
        flight (one can take 20 s on a hung endpoint, past a process manager's grace period):
        their results are never applied, and the next holder reads those batches again from
        the checkpoint."""
        try:
            self.leases_release()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self, *, run_s: float, should_stop: Callable[[], bool]) -> ReaderStats:
        """Read until `run_s` seconds have passed or `should_stop()` is true, then release every
        lease. Renews every lease/3 and balances every SHARDWATCH_READER_BALANCE_S."""
        started = time.monotonic()
        renew_every = self._lease_s / 3
        balance_every = settings.SHARDWATCH_READER_BALANCE_S
        next_renew = next_balance = started
        try:
            while not should_stop() and time.monotonic() - started < run_s:
                now_mono = time.monotonic()
                try:
                    if now_mono >= next_renew:
                        next_renew = now_mono + renew_every
                        self.leases_renew()
                    if now_mono >= next_balance:
                        next_balance = now_mono + balance_every
                        self.leases_balance()
                except DatabaseError:
                    # A database that is down stops nobody: leases run out on their own if it
                    # stays down, and the next renewal reads what is held again.
                    log.exception("reader %s: renewing or balancing leases failed", self.owner)
                    close_old_connections()
                until = min(next_renew, next_balance) - time.monotonic()
                self.polls_wait(timeout_s=max(0.0, min(STOP_CHECK_S, until)))
        finally:
            try:
                self.close()
            except DatabaseError:
                log.exception("reader %s: releasing leases failed; they expire by themselves", self.owner)
        return self.stats

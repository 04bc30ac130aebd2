"""Driving a stream reader in-process, one round of polls at a time, for tests."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from meters.store import meters_flush
from streams.models import Shard
from streams.reader import Reader
from streams.sources import shard_children_discover, source_discover


class Readers:
    """A reader (streams.reader.Reader) driven round by round. It keeps its leases and shard
    iterators from one `until_idle` to the next, as a running reader does, so a test can write
    to a table while the reader holds iterators that were handed out before the write."""

    def __init__(self, *, source_ids: list[int], threads: int = 4):
        self.source_ids = source_ids
        self.finished: list[int] = []
        self.reader = Reader(threads=threads, on_shard_end=lambda source_id, shard_id: self.finished.append(shard_id))

    def _discover(self) -> None:
        for source_id in self.source_ids:
            source_discover(source_id=source_id)

    def until_idle(self, *, max_rounds: int = 40, idle_rounds: int = 2) -> int:
        """Discover, take and poll every readable shard until a few rounds in a row save
        nothing. Returns how many records the polls saved."""
        self._discover()
        saved = idle = 0
        for _ in range(max_rounds):
            self.reader.leases_renew()
            self.reader.leases_balance()
            finished_before = len(self.finished)
            progress = self.reader.polls_round()
            finished_any = len(self.finished) > finished_before
            # As the reader task does: a shard read to its end has its children looked up.
            for shard_id in self.finished[finished_before:]:
                shard_children_discover(shard_id=shard_id)
            saved += progress
            idle = idle + 1 if not progress and not finished_any else 0
            if idle >= idle_rounds and not any(r.error_count for r in self.reader.readings.values()):
                break
        return saved

    def stop(self) -> None:
        self.reader.close()


def read_until_idle(*, source_id: int, max_rounds: int = 40, idle_rounds: int = 2) -> int:
    """Discover, take and poll every readable shard until a few rounds in a row save nothing,
    then release the leases and add the meters the polls counted into the database, as a
    reader process's flushing thread would. Returns how many records the polls saved."""
    readers = Readers(source_ids=[source_id])
    try:
        return readers.until_idle(max_rounds=max_rounds, idle_rounds=idle_rounds)
    finally:
        readers.stop()
        meters_flush()


def shards_claim() -> list[tuple[int, str]]:
    """Lease every readable shard nobody holds, each to an owner token of its own, for tests
    that drive one shard at a time with streams.reading.shard_poll. Returns (shard pk, owner)."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.SHARDWATCH_LEASE_S)
    claimed = []
    for pk in Shard.objects.readable().unleased(now=now).values_list("pk", flat=True):
        owner = Shard.objects.lease_take(pk, now=now, until=until)
        if owner is not None:
            claimed.append((pk, owner))
    return claimed

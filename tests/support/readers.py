"""Driving the shard readers in-process, the way the Celery task chain does, for tests."""

from streams.models import Shard
from streams.reading import shard_poll, shards_claim
from streams.sources import source_discover


class Readers:
    """Readers that keep their leases and shard iterators from one `until_idle` to the next,
    as the Celery task chain does between polls. A test can then write to a table while the
    readers hold iterators that were handed out before the write."""

    def __init__(self, *, source_ids: list[int]):
        self.source_ids = source_ids
        self.leases: dict[int, dict] = {}

    def _discover(self) -> None:
        for source_id in self.source_ids:
            source_discover(source_id=source_id)

    def until_idle(self, *, max_rounds: int = 40, idle_rounds: int = 2) -> int:
        """Discover, claim and poll every readable shard until a few rounds in a row save
        nothing. Returns how many records the polls saved."""
        self._discover()
        saved = idle = 0
        for _ in range(max_rounds):
            for shard_id, owner in shards_claim():
                self.leases[shard_id] = {"owner": owner, "poll_no": 0, "iterator": None, "error_count": 0}
            progress = 0
            finished_any = False
            for shard_id, lease in list(self.leases.items()):
                poll = shard_poll(shard_id=shard_id, **lease)
                lease.update(poll_no=lease["poll_no"] + 1, iterator=poll.iterator, error_count=poll.error_count)
                progress += poll.saved
                if not poll.keep_reading:
                    del self.leases[shard_id]
                    finished_any = True
            if finished_any:
                self._discover()
            saved += progress
            idle = idle + 1 if not progress and not finished_any else 0
            if idle >= idle_rounds and not any(lease["error_count"] for lease in self.leases.values()):
                break
        return saved

    def stop(self) -> None:
        for shard_id, lease in self.leases.items():
            Shard.objects.lease_release(shard_id, owner=lease["owner"])
        self.leases.clear()


def read_until_idle(*, source_id: int, max_rounds: int = 40, idle_rounds: int = 2) -> int:
    """Discover, claim and poll every readable shard until a few rounds in a row save
    nothing, then release the leases. Returns how many records the polls saved."""
    readers = Readers(source_ids=[source_id])
    try:
        return readers.until_idle(max_rounds=max_rounds, idle_rounds=idle_rounds)
    finally:
        readers.stop()

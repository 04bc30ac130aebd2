"""Driving the shard readers in-process, the way the Celery task chain does, for tests."""

from streams.reading import shard_poll, shards_claim
from streams.sources import source_discover


def read_until_idle(*, source_id: int, max_rounds: int = 40, idle_rounds: int = 2) -> int:
    """Discover, claim and poll every readable shard until a few rounds in a row save
    nothing. Returns how many records the polls saved."""
    source_discover(source_id=source_id)
    leases: dict[int, dict] = {}
    saved = idle = 0
    for _ in range(max_rounds):
        for shard_id, owner in shards_claim():
            leases[shard_id] = {"owner": owner, "poll_no": 0, "iterator": None, "error_count": 0}
        progress = 0
        finished_any = False
        for shard_id, lease in list(leases.items()):
            poll = shard_poll(shard_id=shard_id, **lease)
            lease.update(poll_no=lease["poll_no"] + 1, iterator=poll.iterator, error_count=poll.error_count)
            progress += poll.saved
            if not poll.keep_reading:
                del leases[shard_id]
                finished_any = True
        if finished_any:
            source_discover(source_id=source_id)
        saved += progress
        idle = idle + 1 if not progress and not finished_any else 0
        if idle >= idle_rounds and not any(lease["error_count"] for lease in leases.values()):
            break
    for shard_id, lease in leases.items():
        from streams.reading import lease_release

        lease_release(shard_id=shard_id, owner=lease["owner"])
    return saved

"""Which readers are alive and which shards no reader holds (streams.selectors.readers_summary),
as the Streams page's Readers panel shows them.

Most tests write Shard rows with the lease fields a reader leaves (lease_owner, lease_expires_at,
last_polled_by, last_polled_at), at fixed times; one drives real readers (streams.reader.Reader),
whose balancing and release touch only the database.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from streams.models import Shard
from streams.reader import Reader, reader_name
from streams.selectors import readers_summary
from tests.dashboard.test_overview import shard_create, source_create, stream_create

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 4, 12, 30, 20, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=1)


@pytest.fixture(autouse=True)
def lease_settings(settings):
    """A lease of 15 s and a dispatch every 5 s: a shard may wait 35 s before the warning."""
    settings.SHARDWATCH_LEASE_S = 15
    settings.SHARDWATCH_DISPATCH_INTERVAL_S = 5.0
    settings.SHARDWATCH_READER_QUEUE = "shardwatch.readers"
    return settings


@pytest.fixture
def stream():
    return stream_create(source_create())


def held(stream, shard_id, *, owner, name, renewed_s_ago, expires_in_s=10, **fields):
    """A shard as a reader leaves it: leased to `owner` (its token), stamped with its host:pid,
    renewed `renewed_s_ago` seconds before NOW."""
    return shard_create(
        stream, shard_id,
        lease_owner=owner, lease_expires_at=NOW + timedelta(seconds=expires_in_s),
        last_polled_by=name, last_polled_at=NOW - timedelta(seconds=renewed_s_ago),
        discovered_at=LONG_AGO, **fields,
    )


def free(stream, shard_id, parent="", **fields):
    return shard_create(stream, shard_id, parent, **{"discovered_at": LONG_AGO, **fields})


def test_it_lists_each_live_reader_with_its_shards_and_latest_renewal(stream):
    for number, renewed in enumerate([4, 1, 3]):
        held(stream, f"shardId-a{number}", owner="ip-10-0-0-7:812/aa", name="ip-10-0-0-7:812", renewed_s_ago=renewed)
    for number in range(2):
        held(stream, f"shardId-b{number}", owner="ip-10-0-0-5:90/bb", name="ip-10-0-0-5:90", renewed_s_ago=2)

    summary = readers_summary(now=NOW)

    assert summary["alive"] == [
        {"owner": "ip-10-0-0-5:90/bb", "name": "ip-10-0-0-5:90", "shards": 2, "renewed_at": NOW - timedelta(seconds=2)},
        {"owner": "ip-10-0-0-7:812/aa", "name": "ip-10-0-0-7:812", "shards": 3, "renewed_at": NOW - timedelta(seconds=1)},
    ]
    assert (summary["shards"], summary["waiting"], summary["waiting_long"]) == (5, 0, 0)
    assert summary["warning"] == ""


def test_it_counts_no_reader_whose_lease_expired_and_its_shards_wait(stream):
    held(stream, "shardId-live", owner="host:1/aa", name="host:1", renewed_s_ago=1)
    held(stream, "shardId-dead-1", owner="host:2/bb", name="host:2", renewed_s_ago=20, expires_in_s=-5)
    held(stream, "shardId-dead-2", owner="host:2/bb", name="host:2", renewed_s_ago=20, expires_in_s=-5)

    summary = readers_summary(now=NOW)

    assert [reader["name"] for reader in summary["alive"]] == ["host:1"]
    assert (summary["shards"], summary["waiting"], summary["waiting_long"]) == (3, 2, 0)
    assert summary["warning"] == ""  # expired 5 s ago: another reader takes them at its next balance


def test_it_leaves_out_finished_shards(stream):
    # A reader releases a finished shard within lease/3; until then its lease is still on it.
    held(stream, "shardId-done", owner="host:3/cc", name="host:3", renewed_s_ago=1, state=Shard.State.FINISHED)
    free(stream, "shardId-done-free", state=Shard.State.FINISHED, finished_at=LONG_AGO)
    held(stream, "shardId-read", owner="host:1/aa", name="host:1", renewed_s_ago=1)

    summary = readers_summary(now=NOW)

    assert [(reader["name"], reader["shards"]) for reader in summary["alive"]] == [("host:1", 1)]
    assert (summary["shards"], summary["waiting"]) == (1, 0)


def test_it_counts_only_readable_shards_as_waiting(stream):
    parent = free(stream, "shardId-parent", lease_owner="host:1/aa", lease_expires_at=NOW + timedelta(seconds=10))
    free(stream, "shardId-child", parent.shard_id)  # read only once its parent is finished
    disabled = stream_create(source_create("paused", enabled=False))
    free(disabled, "shardId-paused")

    summary = readers_summary(now=NOW)

    assert (summary["shards"], summary["waiting"], summary["waiting_long"]) == (1, 0, 0)
    assert summary["warning"] == ""


def test_it_warns_when_a_shard_never_leased_waits_past_twice_the_lease_and_a_dispatch(stream):
    free(stream, "shardId-new", discovered_at=NOW - timedelta(seconds=34))

    assert readers_summary(now=NOW)["warning"] == ""
    later = readers_summary(now=NOW + timedelta(seconds=2))

    assert (later["alive"], later["waiting"], later["waiting_long"]) == ([], 1, 1)
    assert later["warning"] == (
        "1 shard has no reader: is the reader worker running? (celery -A config worker -Q shardwatch.readers)"
    )


def test_it_warns_when_a_lease_expired_past_twice_the_lease_and_a_dispatch(stream):
    held(stream, "shardId-1", owner="host:2/bb", name="host:2", renewed_s_ago=50, expires_in_s=-34)
    held(stream, "shardId-2", owner="host:2/bb", name="host:2", renewed_s_ago=50, expires_in_s=-36)
    free(stream, "shardId-3", discovered_at=NOW - timedelta(seconds=3))

    summary = readers_summary(now=NOW)

    assert (summary["waiting"], summary["waiting_long"]) == (3, 1)
    assert summary["warning"].startswith("3 shards have no reader: is the reader worker running?")


def test_it_counts_a_released_shard_as_waiting_since_its_last_renewal(stream):
    # A reader that stopped cleared the lease; the shard itself was discovered a day ago.
    free(stream, "shardId-1", last_polled_by="host:1", last_polled_at=NOW - timedelta(seconds=6))

    assert readers_summary(now=NOW)["warning"] == ""
    assert readers_summary(now=NOW + timedelta(seconds=30))["warning"] != ""


def test_it_counts_a_child_shard_as_waiting_since_its_parent_finished(stream):
    # Discovery found the child when its parent closed, an hour before the parent was read to its end.
    free(stream, "shardId-parent", state=Shard.State.FINISHED, finished_at=NOW - timedelta(seconds=10))
    free(stream, "shardId-child", "shardId-parent", discovered_at=NOW - timedelta(hours=1))

    assert readers_summary(now=NOW)["waiting"] == 1
    assert readers_summary(now=NOW)["warning"] == ""
    assert readers_summary(now=NOW + timedelta(seconds=30))["waiting_long"] == 1


def test_it_names_the_reader_queue_from_the_settings(stream, lease_settings):
    lease_settings.SHARDWATCH_READER_QUEUE = "orders-prod.readers"
    free(stream, "shardId-1")

    summary = readers_summary(now=NOW)

    assert summary["reader_queue"] == "orders-prod.readers"
    assert summary["warning"].endswith("(celery -A config worker -Q orders-prod.readers)")


def test_it_answers_in_two_queries_however_many_shards_and_readers(django_assert_num_queries):
    for table in range(3):
        stream = stream_create(source_create(f"table-{table}"))
        for number in range(40):
            owner = f"host:{number % 4}"
            if number % 5:
                held(stream, f"shardId-{number}", owner=f"{owner}/{table}", name=owner, renewed_s_ago=number % 5)
            else:
                free(stream, f"shardId-{number}")

    with django_assert_num_queries(2):
        summary = readers_summary(now=NOW)

    assert len(summary["alive"]) == 12 and summary["shards"] == 120
    assert summary["waiting"] == 24 and summary["waiting_long"] == 24


def test_it_shows_real_readers_sharing_the_shards_and_then_none(stream):
    for number in range(5):
        free(stream, f"shardId-{number}", discovered_at=timezone.now())
    first, second = Reader(threads=1), Reader(threads=1)
    try:
        first.leases_balance()
        second.leases_balance()  # takes its share, 2 or 3, from the first
        first.leases_renew()

        now = timezone.now()
        summary = readers_summary(now=now)

        assert sorted(reader["shards"] for reader in summary["alive"]) == [2, 3]
        assert {reader["owner"] for reader in summary["alive"]} == {first.owner, second.owner}
        assert {reader["name"] for reader in summary["alive"]} == {reader_name()}
        assert all(now - timedelta(seconds=5) < reader["renewed_at"] <= now for reader in summary["alive"])
        assert (summary["shards"], summary["waiting"], summary["warning"]) == (5, 0, "")

        released = len(second.readings)
        second.close()  # releases its shards for the first to take at its next balance
        summary = readers_summary(now=timezone.now())
        assert [reader["owner"] for reader in summary["alive"]] == [first.owner]
        assert (summary["waiting"], summary["warning"]) == (released, "")

        # Nothing renews: a minute on, every lease has run out and no reader is left.
        later = readers_summary(now=timezone.now() + timedelta(minutes=1))
        assert (later["alive"], later["waiting"], later["waiting_long"]) == ([], 5, 5)
        assert later["warning"].startswith("5 shards have no reader")
    finally:
        first.close()
        second.close()

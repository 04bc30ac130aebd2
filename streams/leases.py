"""Leases: rows that at most one worker works on at a time, taken and kept by conditional UPDATEs.

A shard (read by one reader) and a trigger cursor (one runner) are both such rows. Each has the fields
`lease_owner` (a random token, "" when free) and `lease_expires_at`; the model's manager is a
queryset that inherits LeaseQuerySet.

What must stay true:
- A lease is taken only while the row is free or its holder let it expire, in one UPDATE that
  re-checks that condition, so of two workers racing for a row exactly one wins.
- Every write by a holder is conditional on `lease_owner` still being its token, and reports
  whether exactly one row changed. A holder whose lease expired and was taken over, or was
  ended from outside (a reset clears `lease_owner`), changes nothing and learns it at its next
  write: that is how it knows to stop.
- The holder renews before the lease can expire; how long a lease lasts is the caller's
  business (a shard's poll interval, a trigger's timeout).
- A holder of many rows (a stream reader) uses one token for all of them, so that renewing and
  releasing them all is one UPDATE each, and the rows that carry its token are exactly the
  rows it holds.
"""

import uuid

from django.db import models
from django.db.models import Q


def unleased_condition(*, now) -> Q:
    """Rows nobody holds, or whose holder stopped renewing before `now`, as a condition for
    filters, annotations and aggregates; ~unleased_condition(now=now) is a live lease."""
    return Q(lease_owner="") | Q(lease_expires_at__lt=now)


class LeaseQuerySet(models.QuerySet):
    """Rows held by at most one worker: every write is conditional on still holding the lease."""

    def unleased(self, *, now):
        """Rows nobody holds, or whose holder stopped renewing before `now`."""
        return self.filter(unleased_condition(now=now))

    def lease_take(self, pk: int, *, now, until, **fields) -> str | None:
        """Lease row `pk` until `until` if it is unleased at `now`, setting `fields` in the same
        UPDATE. Returns the new owner token, or None when another worker holds the row (or won
        the race for it)."""
        owner = uuid.uuid4().hex
        won = self.filter(pk=pk).unleased(now=now).update(lease_owner=owner, lease_expires_at=until, **fields)
        return owner if won == 1 else None

    def lease_write(self, pk: int, *, owner: str, **fields) -> bool:
        """Set `fields` on row `pk` only while `owner` holds it. Returns whether it did."""
        return self.filter(pk=pk, lease_owner=owner).update(**fields) == 1

    def lease_renew(self, pk: int, *, owner: str, until, **fields) -> bool:
        """Extend `owner`'s lease on row `pk` to `until`, setting `fields` in the same UPDATE.
        Returns False when the lease is no longer `owner`'s."""
        return self.lease_write(pk, owner=owner, lease_expires_at=until, **fields)

    def lease_release(self, pk: int, *, owner: str) -> bool:
        """Give up `owner`'s lease on row `pk`, so the next dispatch can take the row at once.
        Returns False when it was no longer `owner`'s (nothing changes then)."""
        return self.lease_write(pk, owner=owner, lease_owner="", lease_expires_at=None)

    def leases_take(self, pks, *, owner: str, now, until, from_owner: str | None = None, **fields) -> int:
        """Lease the rows `pks` to `owner` until `until`, in one UPDATE, setting `fields` too.

        Takes only rows that are unleased at `now`, or, with `from_owner`, rows that
        `from_owner` holds (a reader taking its share from a reader that holds more than its
        share; the loser learns it at its next renewal). Returns how many rows were taken;
        `held_by(owner)` says which.
        """
        rows = self.filter(pk__in=list(pks))
        rows = rows.filter(lease_owner=from_owner) if from_owner else rows.unleased(now=now)
        return rows.update(lease_owner=owner, lease_expires_at=until, **fields)

    def held_by(self, owner: str):
        """The rows `owner` holds."""
        return self.filter(lease_owner=owner)

    def leases_renew(self, *, owner: str, until, **fields) -> int:
        """Extend every lease `owner` holds to `until`, in one UPDATE. Returns how many rows
        it still holds."""
        return self.held_by(owner).update(lease_expires_at=until, **fields)

    def leases_release(self, *, owner: str) -> int:
        """Give up every lease `owner` holds, in one UPDATE, so that other holders can take the
        rows at once. Returns how many rows were released."""
        return self.held_by(owner).update(lease_owner="", lease_expires_at=None)

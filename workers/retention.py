"""Deleting invocation history past its source's retention.

An invocation's payload is rebuilt from the records it sent, so once retention has deleted
those records the invocation is a row that can no longer show what it sent. It goes with them,
in small batches like the records. Dead letters stay until someone deals with them: they are
the list of what a trigger gave up on, and their reason and sequence numbers outlive the records.
"""

import time
from datetime import timedelta

from django.utils import timezone

from workers.models import Invocation, Trigger

BATCH_SIZE = 2000


def invocations_expire(*, batch_size: int = BATCH_SIZE, time_budget_s: float = 30.0, now=None) -> int:
    """Delete invocations older than their trigger's source retention. Returns how many went;
    bounded by a time budget, whatever is left goes at the next run."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget_s
    deleted = 0
    for trigger_id, days in Trigger.objects.values_list("pk", "source__retention_days"):
        cutoff = now - timedelta(days=days)
        while time.monotonic() < deadline:
            ids = list(
                Invocation.objects.filter(trigger_id=trigger_id, started_at__lt=cutoff).values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            # Dead letters keep their row and lose the link (SET_NULL).
            deleted += Invocation.objects.filter(pk__in=ids).delete()[0]
    return deleted

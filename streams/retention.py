"""Deleting records past their source's retention, in small batches so that no delete holds
locks for long or competes with the readers for minutes."""

import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from streams.models import ChangeRecord, StreamSource

BATCH_SIZE = 2000


def records_expire(*, batch_size: int = BATCH_SIZE, time_budget_s: float = 30.0, now=None) -> int:
    """Delete records older than each source's retention_days. Returns how many went.

    Bounded by a time budget: whatever is left is taken by the next run.
    """
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget_s
    deleted = 0
    for source_id, days in StreamSource.objects.values_list("pk", "retention_days"):
        cutoff = now - timedelta(days=days)
        while time.monotonic() < deadline:
            ids = list(
                ChangeRecord.objects.older_than(source_id=source_id, cutoff=cutoff).values_list("pk", flat=True)[
                    :batch_size
                ]
            )
            if not ids:
                break
            with transaction.atomic():
                deleted += ChangeRecord.objects.filter(pk__in=ids)._raw_delete(ChangeRecord.objects.db)
    return deleted

"""Celery tasks of the trigger domain: thin adapters that take ids and call one function
each, and the receivers of what `streams` announces (connected in workers/apps.py).

The stream readers' tasks live in streams/tasks.py.
"""

import logging
from datetime import datetime

from celery import shared_task
from django.db import close_old_connections, transaction
from django.utils import timezone

from workers import retention as invocation_retention
from workers.cursors import cursors_claim, cursors_ensure, cursors_pending_mark, cursors_pending_recount
from workers.gauges import gauges_sample, meters_prune
from workers.models import DeadLetter, Trigger
from workers.operations import dead_letter_retry, records_replay_between
from workers.runner import cursor_run

TRIGGER_RUN_BUDGET_S = 20.0

log = logging.getLogger(__name__)


def kick_triggers(sender, *, source_id: int, **kwargs) -> None:
    """streams.signals.batch_saved: triggers run as soon as their records are saved, not at
    the next periodic dispatch."""
    if Trigger.objects.filter(source_id=source_id, enabled=True).exists():
        dispatch_triggers.delay(source_id)


def mark_cursors_pending(sender, *, shard_id: int, oldest_at, **kwargs) -> None:
    """streams.signals.batch_saved: the shard's caught-up cursors wait for the batch (one
    UPDATE, for the triggers' iterator age)."""
    cursors_pending_mark(shard_id=shard_id, oldest_at=oldest_at)


def expire_invocations(sender, **kwargs) -> None:
    """streams.signals.records_expired: invocations go with the records they sent."""
    invocation_retention.invocations_expire()


def recount_cursors_pending(sender, **kwargs) -> None:
    """streams.signals.records_expired: a trigger does not wait for records that are gone
    (its iterator age)."""
    cursors_pending_recount()


@shared_task(ignore_result=True)
def dispatch_triggers(source_id: int | None = None) -> None:
    """Start a runner for every trigger cursor with work that nobody holds."""
    triggers = Trigger.objects.filter(enabled=True)
    if source_id is not None:
        triggers = triggers.filter(source_id=source_id)
    for trigger in triggers:
        cursors_ensure(trigger=trigger)
        with transaction.atomic():
            for cursor_id, owner in cursors_claim(trigger_id=trigger.pk):
                transaction.on_commit(lambda c=cursor_id, o=owner: run_trigger_cursor.delay(c, o))


@shared_task(ignore_result=True)
def run_trigger_cursor(cursor_id: int, owner: str) -> None:
    """Batches of one cursor until it has nothing ready or a short time budget is spent, so
    one busy trigger never holds a worker for long."""
    close_old_connections()
    cursor_run(cursor_id=cursor_id, owner=owner, budget_s=TRIGGER_RUN_BUDGET_S)


@shared_task(ignore_result=True)
def sample_gauges() -> None:
    """The charted gauges' minute, and the pruning of what the charts no longer show."""
    now = timezone.now()
    gauges_sample(now=now)
    meters_prune(now=now)


@shared_task(ignore_result=True)
def replay_records(trigger_id: int, start: str, end: str) -> None:
    """Replay what the trigger's source saved between two ISO 8601 times."""
    trigger = Trigger.objects.get(pk=trigger_id)
    records_replay_between(trigger=trigger, start=datetime.fromisoformat(start), end=datetime.fromisoformat(end))


@shared_task(ignore_result=True)
def retry_dead_letter(letter_id: int) -> None:
    dead_letter_retry(letter=DeadLetter.objects.select_related("trigger").get(pk=letter_id))

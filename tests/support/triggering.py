"""Running triggers in the test process, the way the dispatcher and runner tasks do."""

from workers.models import Trigger, TriggerCursor
from workers.cursors import cursors_claim, cursors_ensure
from workers.runner import cursor_run


def trigger_for(source, handler, **settings) -> Trigger:
    """A Python-handler trigger on `source` running tests.handlers.triggers.<handler>."""
    return Trigger.objects.create(
        name=f"t-{handler}", source=source, target=Trigger.Target.PYTHON,
        handler=f"tests.handlers.triggers.{handler}", **settings,
    )


def run_until_idle(trigger, *, rounds=50):
    """The dispatcher and runner in this process. Backoff waits are skipped: time is not what
    these tests are about."""
    for _ in range(rounds):
        cursors_ensure(trigger=trigger)
        TriggerCursor.objects.filter(trigger=trigger).update(next_attempt_at=None)
        claimed = cursors_claim(trigger_id=trigger.pk)
        if not claimed:
            return
        for cursor_id, owner in claimed:
            cursor_run(cursor_id=cursor_id, owner=owner)
    raise AssertionError("trigger still had work after many rounds")


def retry_rounds(trigger, rounds):
    """The dispatcher and runner, `rounds` times, with backoff skipped: for a trigger whose
    handler fails, which never goes idle."""
    for _ in range(rounds):
        cursors_ensure(trigger=trigger)
        TriggerCursor.objects.filter(trigger=trigger).update(next_attempt_at=None)
        for cursor_id, owner in cursors_claim(trigger_id=trigger.pk):
            cursor_run(cursor_id=cursor_id, owner=owner)


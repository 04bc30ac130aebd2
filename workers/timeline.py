"""The invocation timeline: what a page shows of each invocation, pushed live as it is recorded.

Invocations reach INVOCATIONS_GROUP as `invocations.new` messages only once their transaction
has committed, so a page never shows one that was rolled back; a runner sends those of a
backlog a few at a time (CursorRunner.PUBLISH_EVERY_S), not one message per batch.
"""

from streams.push import group_publish
from workers.models import INVOCATION_OUTCOMES, Invocation

INVOCATIONS_GROUP = "invocations"
OUTCOME_VALUES = tuple(value for value, _ in INVOCATION_OUTCOMES)


def invocation_row(invocation: Invocation) -> dict:
    """What the live invocation timeline shows of one invocation."""
    return {
        "id": invocation.pk,
        "trigger_id": invocation.trigger_id,
        "shard_id": invocation.shard_id,
        "lane": invocation.lane,
        "outcome": invocation.outcome,
        "record_count": invocation.record_count,
        "filtered_count": invocation.filtered_count,
        "attempt": invocation.attempt,
        "from_bisect": invocation.from_bisect,
        "started_at": invocation.started_at.isoformat(),
        "duration_ms": round(invocation.duration_ms, 1),
        "error_type": invocation.error_type,
        "error_message": invocation.error_message[:300],
        "first_sequence_number": invocation.first_sequence_number,
        "last_sequence_number": invocation.last_sequence_number,
    }


def invocations_publish(rows: list[dict]) -> None:
    """Tell the live timelines about saved invocations, in one message."""
    if rows:
        group_publish(group=INVOCATIONS_GROUP, message={"type": "invocations.new", "invocations": rows})

"""The invocation timeline: what a page shows of each invocation, pushed live as it is recorded.

One InvocationFilter says which invocations a person is looking at. It is parsed once, from
query parameters (the timeline page, /api/invocations) or a socket's subscribe message, and
applied the same way to a database query and to rows pushed live, as streams.feed.FeedFilter
is for change records.

Invocations reach INVOCATIONS_GROUP as `invocations.new` messages only once their transaction
has committed, so a page never shows one that was rolled back; a runner sends those of a
backlog a few at a time (CursorRunner.PUBLISH_EVERY_S), not one message per batch.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from django.db.models import QuerySet

from streams.feed import FilterError
from streams.push import group_publish
from workers.models import INVOCATION_OUTCOMES, Invocation, Trigger

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


def invocation_rows_masked(*, rows: list[dict], masking) -> list[dict]:
    """invocation_row dicts as a viewer under `masking` (streams.masking.Masking) may see them:
    the error message of an invocation whose trigger reads a source with masking rules is
    streams.masking.WITHHELD, since a handler's error may quote the records it was given. One
    query, and none without masking."""
    if not masking.active or not rows:
        return rows
    sources = dict(Trigger.objects.filter(pk__in={row["trigger_id"] for row in rows}).values_list("pk", "source_id"))
    return [
        {**row, "error_message": masking.text_shown(row["error_message"], source_id=sources.get(row["trigger_id"]))}
        for row in rows
    ]


def invocations_publish(rows: list[dict]) -> None:
    """Tell the live timelines about saved invocations, in one message."""
    if rows:
        group_publish(group=INVOCATIONS_GROUP, message={"type": "invocations.new", "invocations": rows})


@dataclass(frozen=True)
class InvocationFilter:
    """Invocations of one trigger (or of all), with one outcome (or any)."""

    trigger_id: int | None = None
    outcome: str = ""

    @classmethod
    def from_params(cls, params: Mapping) -> "InvocationFilter":
        """From query parameters or a subscribe message: `trigger`, a trigger id (absent, ""
        or null for every trigger; a JSON number or its digits), and `outcome`, one of
        OUTCOME_VALUES (absent or "" for any). Raises streams.feed.FilterError, whose message
        names the parameter and is meant for the user."""
        return cls(trigger_id=_trigger_id(_last(params, "trigger")), outcome=_outcome(_last(params, "outcome")))

    def as_json(self) -> dict:
        """The filter as a subscribe message and the `subscribed` answer carry it."""
        return {"trigger": self.trigger_id, "outcome": self.outcome}

    def apply(self, invocations: QuerySet) -> QuerySet:
        """The invocations of the queryset that the filter lets through."""
        if self.trigger_id is not None:
            invocations = invocations.filter(trigger_id=self.trigger_id)
        return invocations.filter(outcome=self.outcome) if self.outcome else invocations

    def matches_row(self, row: dict) -> bool:
        """The same test as apply() for a pushed timeline row (invocation_row)."""
        if self.trigger_id is not None and row.get("trigger_id") != self.trigger_id:
            return False
        return not self.outcome or row.get("outcome") == self.outcome


def _last(params: Mapping, name: str):
    # A repeated parameter (?trigger=1&trigger=2): the page and the API read the last one
    # (QueryDict.get), and the socket's subscribe message carries all of them as a list. All
    # three must read it alike, or the live rows would not be the page's.
    value = params.get(name)
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def _trigger_id(raw) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise FilterError("trigger must be a whole number.")
    if isinstance(raw, str):
        raw = raw.strip()
        if not raw:
            return None
        try:
            raw = int(raw)
        except ValueError:
            raise FilterError("trigger must be a whole number.") from None
    if raw < 1:
        raise FilterError("trigger must be at least 1.")
    return raw


def _outcome(raw) -> str:
    outcome = raw.strip() if isinstance(raw, str) else raw
    if not outcome:
        return ""
    if outcome not in OUTCOME_VALUES:
        raise FilterError(f"outcome must be one of {', '.join(OUTCOME_VALUES)}.")
    return outcome

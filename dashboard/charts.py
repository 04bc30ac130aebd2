"""The charts of the Streams and Triggers pages: per source and per trigger series over a
range, read from the per-minute meters (meters.store.series_steps), the same figures /metrics
serves. static/js/lib/charts.js draws them with uPlot.

A range is cut into steps so that a chart has at most 360 points: a minute for 1 and 6 hours,
five minutes for 24 hours (288 points). Steps are aligned to the clock (UTC), so a refetch
moves the window by whole steps and the last step is the one still running.

What must stay true: counters (records, poll errors, invocations) are null in that running
step, as its count so far would draw as a drop toward 0 every time; gauges (lag) and the
error rate, a share rather than a sum, keep it."""

import json
from datetime import datetime, timedelta

from meters.store import series_steps
from streams.models import StreamSource
from workers.models import FAILED_OUTCOMES, INVOCATION_OUTCOMES, Trigger

# name: (how far back, step)
RANGES = {
    "1h": (timedelta(hours=1), timedelta(minutes=1)),
    "6h": (timedelta(hours=6), timedelta(minutes=1)),
    "24h": (timedelta(hours=24), timedelta(minutes=5)),
}
RANGE_DEFAULT = "24h"


def chart_range(*, asked: str | None) -> str:
    """The range a page's charts start at: `asked` (its ?range=) when it is a RANGES key,
    else RANGE_DEFAULT, so an old or mistyped link still opens the page."""
    return asked if asked in RANGES else RANGE_DEFAULT

RECORDS_READ = "shardwatch_records_read_total"
POLL_ERRORS = "shardwatch_poll_errors_total"
ITERATOR_AGE = "shardwatch_iterator_age_seconds"
INVOCATIONS = "shardwatch_trigger_invocations_total"


def _steps(*, range_name: str, now: datetime) -> tuple[datetime, timedelta]:
    """(since, step) of a range ending at `now`; ValueError for a range not in RANGES."""
    if range_name not in RANGES:
        raise ValueError(f"range is one of {', '.join(RANGES)}.")
    span, step = RANGES[range_name]
    # `span` back from the step now is in, that step included: span / step steps in all.
    return now - span + step, step


def _frame(*, range_name: str, step: timedelta, starts: list[datetime]) -> dict:
    return {
        "range": range_name,
        "step_seconds": int(step.total_seconds()),
        "times": [int(start.timestamp()) for start in starts],
    }


def _running_left_out(series: list) -> list:
    """A counter's values per step with the running (last) step null."""
    return [*series[:-1], None] if series else series


def _by_label(series: dict[str, list], *, label: str, size: int, empty) -> dict[str, list]:
    """Series keyed by labels_key, regrouped by the value of one label: counters summed (other
    labels, like `error`, added up), gauges' highest kept; the key is the label's text (an id)."""
    grouped: dict[str, list] = {}
    for key, values in series.items():
        target = grouped.setdefault(json.loads(key)[label], [empty] * size)
        for index, value in enumerate(values):
            if value is None:
                continue
            current = target[index]
            if empty is None:
                target[index] = value if current is None else max(current, value)
            else:
                target[index] = current + value
    return grouped


def source_series(*, range_name: str, now: datetime) -> dict:
    """Every source's charts over range `range_name` (a RANGES key) ending at `now`.

    {"range": "24h", "step_seconds": 300, "times": [step starts, epoch seconds UTC, oldest first],
     "sources": [{"id", "table",
                  "records": [records read per step, 0 when none, null in the running step],
                  "poll_errors": [failed GetRecords/GetShardIterator calls per step, all errors,
                                  null in the running step],
                  "lag_seconds": [the highest iterator age sampled in the step, null when none
                                  was sampled]}]}

    One value per time in each list. Sources are ordered by table name.
    Raises ValueError for an unknown range."""
    since, step = _steps(range_name=range_name, now=now)
    starts, records = series_steps(name=RECORDS_READ, since=since, until=now, step=step)
    _, errors = series_steps(name=POLL_ERRORS, since=since, until=now, step=step)
    _, age = series_steps(name=ITERATOR_AGE, since=since, until=now, step=step)
    size = len(starts)
    records = _by_label(records, label="source", size=size, empty=0)
    errors = _by_label(errors, label="source", size=size, empty=0)
    age = _by_label(age, label="source", size=size, empty=None)
    sources = []
    for source_id, table in StreamSource.objects.order_by("table_name", "pk").values_list("pk", "table_name"):
        sources.append({
            "id": source_id,
            "table": table,
            "records": _running_left_out(records.get(str(source_id), [0] * size)),
            "poll_errors": _running_left_out(errors.get(str(source_id), [0] * size)),
            "lag_seconds": age.get(str(source_id), [None] * size),
        })
    return {**_frame(range_name=range_name, step=step, starts=starts), "sources": sources}


def trigger_series(*, range_name: str, now: datetime) -> dict:
    """Every trigger's charts over range `range_name` (a RANGES key) ending at `now`.

    {"range", "step_seconds", "times": as source_series,
     "outcomes": [[value, label], ...]  # workers.models.INVOCATION_OUTCOMES, the order drawn
     "triggers": [{"id", "name",
                   "invocations": {outcome value: [invocations per step, 0 when none, null
                                                   in the running step]},
                   "error_rate": [share (0..1) of the step's invocations that failed,
                                  null in a step without invocations]}]}

    "Failed" is an outcome of workers.models.FAILED_OUTCOMES, as every error rate counts it. Triggers are ordered by name. Raises ValueError for an
    unknown range."""
    since, step = _steps(range_name=range_name, now=now)
    starts, invocations = series_steps(name=INVOCATIONS, since=since, until=now, step=step)
    size = len(starts)
    by_trigger: dict[str, dict[str, list]] = {}
    for key, values in invocations.items():
        labels = json.loads(key)
        by_trigger.setdefault(labels["trigger"], {})[labels["outcome"]] = values
    triggers = []
    for trigger_id, name in Trigger.objects.order_by("name", "pk").values_list("pk", "name"):
        counted = by_trigger.get(str(trigger_id), {})
        # Every outcome counts towards the rate, those not drawn (throttled) too.
        totals = [sum(step_counts) for step_counts in zip(*counted.values(), strict=True)] or [0] * size
        failures = [sum(step_counts) for step_counts in zip(
            *(values for outcome, values in counted.items() if outcome in FAILED_OUTCOMES), strict=True)] or [0] * size
        triggers.append({
            "id": trigger_id,
            "name": name,
            "invocations": {outcome: _running_left_out(counted.get(outcome, [0] * size))
                            for outcome, _ in INVOCATION_OUTCOMES},
            "error_rate": [failed / total if total else None for total, failed in zip(totals, failures, strict=True)],
        })
    return {
        **_frame(range_name=range_name, step=step, starts=starts),
        "outcomes": [[value, label] for value, label in INVOCATION_OUTCOMES],
        "triggers": triggers,
    }

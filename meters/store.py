"""Counting in every process, adding up in the database.

Shardwatch runs as many processes on many machines (web, workers, readers). A meter is counted
in memory where the work happens and added into its Meter (and, when charted, MeterMinute) row
by one upsert a series. The database is the one place that every web process can read, so any
of them answers /metrics with the figures of all (prometheus_client's multiprocess mode needs
one shared directory, so one machine; that is why it is not used here).

Writes are buffered: a reader polls thousands of shards a second, and a row write per poll
would cost more than the poll. A thread per process flushes every SHARDWATCH_METERS_FLUSH_S on
its own connection, outside the callers' transactions, so a meter row is never locked for the
length of a caller's transaction. What a process counted in its last interval is lost if it is
killed (SIGKILL); a clean exit flushes. With SHARDWATCH_METERS_FLUSH_S = 0 (the tests) there
is no thread: counts wait for meters_flush(), which writes on the caller's connection.

Upserts are sorted by key, so two processes flushing the same series take row locks in one
order and never deadlock.
"""

import atexit
import json
import logging
import os
import threading
from collections import defaultdict
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import IntegerField, Max, Sum
from django.db.models.functions import Cast, ExtractMinute, TruncHour
from django.utils import timezone

from meters.catalog import COUNTER, GAUGE, HISTOGRAM, SPECS
from meters.models import Meter, MeterMinute

log = logging.getLogger(__name__)

_lock = threading.Lock()
_totals: dict[tuple[str, str], float] = defaultdict(float)
_minutes: dict[tuple[str, str, datetime], float] = defaultdict(float)
_flusher_pid: int | None = None
_stop = threading.Event()


def labels_key(*, labels: dict) -> str:
    """The canonical text of a label set: JSON with sorted keys and string values, as stored in
    Meter.labels. {"trigger": 7, "outcome": "ok"} -> '{"outcome": "ok", "trigger": "7"}'."""
    return json.dumps({str(key): str(value) for key, value in labels.items()}, sort_keys=True)


def _spec(name: str, kind: str, labels: dict):
    spec = SPECS.get(name)
    if spec is None or spec.kind != kind:
        raise ValueError(f"{name} is not a {kind} in meters.catalog.SPECS")
    if set(labels) != set(spec.labels):
        raise ValueError(f"{name} takes labels {spec.labels}, got {tuple(labels)}")
    return spec


def _add(name: str, key: str, value: float, minute: datetime | None) -> None:
    _totals[(name, key)] += value
    if minute is not None:
        _minutes[(name, key, minute)] += value


def meter_count(*, name: str, labels: dict, value: float = 1, at: datetime | None = None) -> None:
    """Add `value` (>= 0) to the counter `name` (a meters.catalog name ending in _total) for
    `labels` (exactly the spec's label names; values made text). `at` places a charted counter
    in its minute (default now). Raises ValueError for an unknown name, wrong labels or a
    negative value. Buffered: see the module docstring."""
    spec = _spec(name, COUNTER, labels)
    if value < 0:
        raise ValueError(f"{name} is a counter; it cannot go down by {value}")
    minute = _minute(at) if spec.charted else None
    with _lock:
        _add(name, labels_key(labels=labels), value, minute)
    _flusher_ensure()


def meter_sample(*, name: str, labels: dict, value: float, at: datetime | None = None) -> None:
    """Keep `value` as charted gauge `name`'s value for the minute of `at` (default now) if it
    is the highest seen in that minute. Written at once, on the caller's connection (gauges are
    sampled by one periodic task, not in hot paths). Raises ValueError as meter_count does, and
    for a gauge that is not charted."""
    if not _spec(name, GAUGE, labels).charted:
        raise ValueError(f"{name} is not charted: it is read at scrape time only")
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {_MINUTE} (name, labels, minute, value) VALUES (%s, %s, %s, %s)
            ON CONFLICT (name, labels, minute) DO UPDATE SET value = {greatest}({_MINUTE}.value, excluded.value)""",
            [name, labels_key(labels=labels), _minute(at), value],
        )


def meter_observe(*, name: str, labels: dict, value: float) -> None:
    """Observe `value` (seconds, for the _seconds histograms) in histogram `name`: adds to its
    cumulative `_bucket` series (an `le` label per bucket, then `+Inf`), `_sum` and `_count`,
    as Prometheus' text format has them. Raises ValueError as meter_count does. Buffered."""
    spec = _spec(name, HISTOGRAM, labels)
    key = labels_key(labels=labels)
    with _lock:
        for bound in spec.buckets:
            if value <= bound:
                _add(f"{name}_bucket", labels_key(labels={**labels, "le": _le(bound)}), 1, None)
        _add(f"{name}_bucket", labels_key(labels={**labels, "le": "+Inf"}), 1, None)
        _add(f"{name}_sum", key, value, None)
        _add(f"{name}_count", key, 1, None)
    _flusher_ensure()


def _le(bound: float) -> str:
    # Prometheus' own text for a bucket bound: 0.5 -> "0.5", 1 -> "1.0".
    return repr(float(bound))


def _minute(at: datetime | None) -> datetime:
    return (at or timezone.now()).replace(second=0, microsecond=0)


def meters_flush() -> int:
    """Add what this process has counted since the last flush into the database, on the
    calling thread's connection, in one transaction. Returns how many series it wrote. On a
    database error the counts are put back, to be tried at the next flush, and the error is
    raised."""
    with _lock:
        totals = dict(_totals)
        minutes = dict(_minutes)
        _totals.clear()
        _minutes.clear()
    if not totals and not minutes:
        return 0
    try:
        with transaction.atomic():
            _upsert_totals(totals)
            _upsert_minutes(minutes)
    except Exception:
        with _lock:
            for (name, key), value in totals.items():
                _totals[(name, key)] += value
            for minute_key, value in minutes.items():
                _minutes[minute_key] += value
        raise
    return len(totals) + len(minutes)


def meters_forget() -> None:
    """Drop what this process has counted and not yet flushed. For the tests, which run one
    after another in one process and must each see only their own counts."""
    with _lock:
        _totals.clear()
        _minutes.clear()


_METER = Meter._meta.db_table
_MINUTE = MeterMinute._meta.db_table
_TOTAL_UPSERT = f"""
    INSERT INTO {_METER} (name, labels, value, updated_at) VALUES (%s, %s, %s, %s)
    ON CONFLICT (name, labels) DO UPDATE
    SET value = {_METER}.value + excluded.value, updated_at = excluded.updated_at
"""
_MINUTE_UPSERT = f"""
    INSERT INTO {_MINUTE} (name, labels, minute, value) VALUES (%s, %s, %s, %s)
    ON CONFLICT (name, labels, minute) DO UPDATE SET value = {_MINUTE}.value + excluded.value
"""


def _upsert_totals(totals: dict) -> None:
    now = timezone.now()
    rows = [(name, key, value, now) for (name, key), value in sorted(totals.items())]
    with connection.cursor() as cursor:
        cursor.executemany(_TOTAL_UPSERT, rows)


def _upsert_minutes(minutes: dict) -> None:
    rows = [(name, key, minute, value) for (name, key, minute), value in sorted(minutes.items())]
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(_MINUTE_UPSERT, rows)


def _flusher_ensure() -> None:
    """Start this process's flushing thread, once per process (a forked child starts its own)."""
    global _flusher_pid
    interval = settings.SHARDWATCH_METERS_FLUSH_S
    if not interval or _flusher_pid == os.getpid():
        return
    with _lock:
        if _flusher_pid == os.getpid():
            return
        _flusher_pid = os.getpid()
    threading.Thread(target=_flush_loop, args=(interval,), name="meters-flush", daemon=True).start()


def _flush_loop(interval: float) -> None:
    while not _stop.wait(interval):
        _flush_quietly()


def _flush_quietly() -> None:
    try:
        close_old_connections()
        meters_flush()
    except Exception:
        # The counts are kept for the next try; a database that is down must not kill the thread.
        log.warning("meters: flush failed; will try again", exc_info=True)
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()


@atexit.register
def _flush_at_exit() -> None:
    if _flusher_pid == os.getpid():
        _flush_quietly()


def meters_totals() -> list[tuple[str, str, float]]:
    """Every stored series as (name, labels_key text, value), in no order: what a scrape reads,
    without building a model instance a row."""
    return list(Meter.objects.order_by().values_list("name", "labels", "value"))


def series_steps(*, name: str, since: datetime, until: datetime, step: timedelta) -> tuple[list[datetime], dict[str, list]]:
    """Charted meter `name` cut into steps of `step` (whole minutes that divide an hour: 1, 5,
    15, ...) from the step `since` is in to the step `until` is in, both included, UTC.

    Returns (starts, {labels_key: values}): the start of each step, oldest first, and one value
    per step for every label set seen in the range. A counter's value is the sum of its minutes,
    0 where nothing was counted; a gauge's is the highest sample, None where none was taken (a
    gap, not a zero). Added up in the database: a day of minutes for every trigger is too many
    rows to bring over. Raises ValueError for a meter that is not charted or a step that does
    not divide an hour."""
    spec = SPECS.get(name)
    if spec is None or not spec.charted:
        raise ValueError(f"{name} is not a charted meter")
    step_min, rest = divmod(step, timedelta(minutes=1))
    if rest or step_min < 1 or 60 % step_min:
        raise ValueError(f"a step of {step} does not divide an hour into whole minutes")
    first = _step_start(since, step_min)
    count = (_step_start(until, step_min) - first) // step + 1
    starts = [first + i * step for i in range(count)]
    rows = (
        MeterMinute.objects.filter(name=name, minute__gte=first, minute__lt=first + count * step)
        .values("labels", hour=TruncHour("minute", tzinfo=dt_timezone.utc))
        # The step of the hour a minute is in, by integer division: PostgreSQL's EXTRACT gives
        # a numeric, which would divide into fractions (and a group per minute) uncast.
        .annotate(slot=Cast(ExtractMinute("minute", tzinfo=dt_timezone.utc), IntegerField()) / step_min)
        .values_list("labels", "hour", "slot")
        .annotate(value=Max("value") if spec.kind == GAUGE else Sum("value"))
        .order_by()
    )
    empty = None if spec.kind == GAUGE else 0
    series: dict[str, list] = {}
    for labels, hour, slot, value in rows:
        index = (hour + slot * step - first) // step
        series.setdefault(labels, [empty] * count)[index] = value
    return starts, series


def _step_start(at: datetime, step_min: int) -> datetime:
    minute = _minute(at)
    return minute.replace(minute=minute.minute - minute.minute % step_min)


def minutes_prune(*, before: datetime) -> int:
    """Delete the per-minute rows older than `before`; returns how many. Meter rows (the
    totals a scrape reads) go only with their source or trigger (series_prune)."""
    deleted, _ = MeterMinute.objects.filter(minute__lt=before).delete()
    return deleted


def series_prune(*, label: str, kept: set[int], before: datetime) -> int:
    """End the series of what is gone: delete the Meter rows of every meters.catalog name
    labelled `label` ("source" or "trigger") whose id is not in `kept` (the ids that exist)
    and none of whose rows was written since `before` (an aware datetime; the caller's grace
    period, so counts that a process flushes after the id went still land in a series that a
    scrape has seen end, not in one reborn from zero). All rows of an id go together, so a
    histogram's buckets always add up. Returns how many rows went. Per-minute rows age out
    with minutes_prune.

    This ends those counters for good: Prometheus sees the series disappear (as it does a
    target's that stopped), and rate() and increase() over them end there."""
    names = {spec.name for spec in SPECS.values() if spec.kind == COUNTER and label in spec.labels}
    names |= {
        f"{spec.name}_{part}"
        for spec in SPECS.values() if spec.kind == HISTOGRAM and label in spec.labels
        for part in ("bucket", "sum", "count")
    }
    kept_text = {str(pk) for pk in kept}
    rows: dict[str, list[int]] = defaultdict(list)
    written_since: set[str] = set()
    for pk, text, updated_at in Meter.objects.filter(name__in=names).values_list("pk", "labels", "updated_at").iterator():
        owner = json.loads(text).get(label) if text else None
        if owner is None or owner in kept_text:
            continue
        rows[owner].append(pk)
        if updated_at >= before:
            written_since.add(owner)
    gone = [pk for owner, pks in rows.items() if owner not in written_since for pk in pks]
    deleted = 0
    for start in range(0, len(gone), 1000):
        deleted += Meter.objects.filter(pk__in=gone[start:start + 1000]).delete()[0]
    return deleted

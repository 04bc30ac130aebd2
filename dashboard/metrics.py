"""GET /metrics: every meter in Prometheus' text format, for all processes on all machines.

Why the database and not prometheus_client's multiprocess mode: that mode adds up files that
every process writes into one shared directory, so it sees one machine only, and a web process
would not see the readers and runners on the others. Counters and histograms are counted in
each process and added up in the database (meters.store); gauges are read at scrape time from
the state the database holds (streams' and workers' selectors). So any web process answers
for all, and a restarted worker resets nothing.

What must stay true:
- A fresh CollectorRegistry per scrape, never the global default one: the default would also
  export this web process's own Python and process collectors, which say nothing of the rest.
- Labels carry ids (source, trigger) so a renamed trigger or source keeps its series; names
  (table, region, trigger_name) are joined in beside them at scrape time.
- Label values are bounded. Shard-level series exist only for the WORST_SHARDS (3) shards
  furthest behind in each source (streams.selectors.sources_lag), so a 1,000-shard stream adds
  3 series, not 1,000; the source-level figure is the maximum over all its shards. Poll errors
  are labelled by AWS error code or exception class (streams.aws.error_code), a small fixed set.
  Stuck shards are a count per source, a poison batch the most retries per trigger; the
  invocations' zero series are one per trigger and Outcome.
- Every source and trigger that exists has its shardwatch_source_enabled and
  shardwatch_trigger_enabled series: rules.yml joins on them to leave disabled ones out, so a
  missing one would silence its alerts.
- No item data: no keys, no images, no sequence numbers; only counts, ages and names of
  tables, shards, triggers and reader processes.
"""

import hmac
from collections import defaultdict
from datetime import datetime

import orjson
from django.conf import settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from meters.catalog import COUNTER, HISTOGRAM, SPECS
from meters.heartbeats import heartbeats_by_role
from meters.store import labels_key, meters_totals
from streams.models import StreamSource
from streams.selectors import readers_alive, shards_by_state, shards_stuck, sources_lag
from workers.models import Outcome, Trigger
from workers.selectors import triggers_backlog

# Prometheus' text format 0.0.4, which every Prometheus 2.x and promtool read.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# shardwatch_shards_stuck counts the shards whose checkpoint has been still this long
# (streams.selectors.shards_stuck); rules.yml's ShardwatchShardStuck says "5 minutes" with it.
SHARD_STUCK_S = 5 * 60
# What a logged-in user must hold to read /metrics without METRICS_TOKEN.
METRICS_PERMISSION = "streams.view_streamsource"


def metrics_access(*, request) -> bool:
    """Whether `request` may read /metrics: it sends `Authorization: Bearer <METRICS_TOKEN>`
    (compared in constant time; never when METRICS_TOKEN is empty), or comes from a logged-in,
    active user who may see the sources (streams.view_streamsource, which every role holds): the
    series name every table, trigger and reader, which a user with no role must not learn."""
    token = settings.METRICS_TOKEN
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.has_perm(METRICS_PERMISSION))


def metrics_text(*, now: datetime) -> bytes:
    """The exposition of every meter at `now` (an aware datetime), in the text format of
    CONTENT_TYPE. A fixed number of queries however many sources, shards and triggers."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(now=now))
    return generate_latest(registry)


class _Collector:
    """prometheus_client's custom collector protocol: collect() yields metric families."""

    def __init__(self, *, now: datetime):
        self.now = now

    def collect(self):
        sources = {pk: (table, region) for pk, table, region in StreamSource.objects.values_list("pk", "table_name", "region")}
        triggers = {pk: (name, enabled) for pk, name, enabled in Trigger.objects.values_list("pk", "name", "enabled")}
        names = _Names(sources=sources, triggers={pk: name for pk, (name, _) in triggers.items()})
        yield from _stored(names=names)
        yield from _source_gauges(names=names, now=self.now)
        yield from _trigger_gauges(names=names, now=self.now, enabled={pk: on for pk, (_, on) in triggers.items()})
        yield from _process_gauges(now=self.now)


class _Names:
    """Turns stored id labels into the label names and values of a family."""

    def __init__(self, *, sources: dict, triggers: dict):
        self.sources = sources
        self.triggers = triggers

    def label_names(self, spec_labels: tuple[str, ...]) -> list[str]:
        extra = []
        if "source" in spec_labels:
            extra += ["table", "region"]
        if "trigger" in spec_labels:
            extra += ["trigger_name"]
        return list(spec_labels) + extra

    def values(self, spec_labels: tuple[str, ...], labels: dict) -> list[str]:
        values = [str(labels.get(name, "")) for name in spec_labels]
        if "source" in spec_labels:
            # A deleted source's counters stay (a counter must not reset) with no names left,
            # until an hour without counts ends them (workers.gauges.SERIES_GRACE).
            values += list(self.sources.get(_int(labels.get("source")), ("", "")))
        if "trigger" in spec_labels:
            values += [self.triggers.get(_int(labels.get("trigger")), "")]
        return values


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _stored(*, names: _Names):
    """Counters and histograms as meters.store added them up."""
    counters: dict[str, list] = defaultdict(list)
    buckets: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    sums: dict[str, dict[str, float]] = defaultdict(dict)
    counts: dict[str, dict[str, float]] = defaultdict(dict)
    for name, text, value in meters_totals():
        spec = SPECS.get(name)
        if spec is not None and spec.kind == COUNTER:
            counters[name].append((orjson.loads(text) if text else {}, value))
            continue
        base, _, part = name.rpartition("_")
        if SPECS.get(base) is None or SPECS[base].kind != HISTOGRAM:
            continue  # a series no spec names any more
        if part == "bucket":
            labels = orjson.loads(text)
            le = labels.pop("le", "+Inf")
            buckets[base][labels_key(labels=labels)][le] = value
        elif part == "sum":
            sums[base][text] = value
        elif part == "count":
            counts[base][text] = value
    for name, spec in SPECS.items():
        if spec.kind == COUNTER:
            family = CounterMetricFamily(name, spec.help, labels=names.label_names(spec.labels))
            rows = counters.get(name, [])
            for labels, value in rows:
                family.add_metric(names.values(spec.labels, labels), value)
            for labels in _unseen(spec_labels=spec.labels, rows=rows, names=names):
                family.add_metric(names.values(spec.labels, labels), 0.0)
            yield family
        elif spec.kind == HISTOGRAM:
            family = HistogramMetricFamily(name, spec.help, labels=names.label_names(spec.labels))
            for key, count in counts.get(name, {}).items():
                stored = buckets[name][key]
                # A bucket no observation fell in has no row: its cumulative count is 0.
                cumulative = [(repr(float(bound)), stored.get(repr(float(bound)), 0.0)) for bound in spec.buckets]
                cumulative.append(("+Inf", stored.get("+Inf", count)))
                family.add_metric(
                    names.values(spec.labels, orjson.loads(key)), cumulative, sum_value=sums[name].get(key, 0.0)
                )
            yield family


def _unseen(*, spec_labels: tuple[str, ...], rows: list, names: _Names) -> list[dict]:
    """Zero series for what a counter labelled by a source or trigger id (and, for the
    invocations, each workers.models.Outcome) has no row for yet. Prometheus' increase() and
    rate() need a sample before the first count: a gaps counter that first appears at 1 would
    never show an increase, nor a trigger's first function error its error rate, and their
    alerts never fire (https://prometheus.io/docs/practices/instrumentation/#avoid-missing-metrics).
    Bounded: sources, or triggers times the 6 outcomes."""
    if spec_labels in (("source",), ("trigger",)):
        name = spec_labels[0]
        ids = names.sources if name == "source" else names.triggers
        wanted = [{name: str(pk)} for pk in ids]
    elif spec_labels == ("trigger", "outcome"):
        wanted = [{"trigger": str(pk), "outcome": outcome} for pk in names.triggers for outcome in Outcome.values]
    else:
        return []
    seen = {tuple(str(labels.get(name)) for name in spec_labels) for labels, _ in rows}
    return [labels for labels in wanted if tuple(labels[name] for name in spec_labels) not in seen]


def _gauge(name: str, names: _Names | None = None) -> GaugeMetricFamily:
    spec = SPECS[name]
    labels = names.label_names(spec.labels) if names is not None else list(spec.labels)
    return GaugeMetricFamily(name, spec.help, labels=labels)


def _source_gauges(*, names: _Names, now: datetime):
    lags = sources_lag(now=now)
    age = _gauge("shardwatch_iterator_age_seconds", names)
    shard_age = _gauge("shardwatch_shard_iterator_age_seconds", names)
    rounded = _gauge("shardwatch_source_record_times_rounded", names)
    for source_id, lag in lags.items():
        labels = {"source": source_id}
        if lag.lag_s is not None:
            age.add_metric(names.values(("source",), labels), lag.lag_s)
        for shard_id, shard_lag in lag.worst_shards:
            shard_age.add_metric(names.values(("source", "shard"), {**labels, "shard": shard_id}), shard_lag)
        rounded.add_metric(names.values(("source",), labels), 1.0 if lag.rounded else 0.0)
    yield from (age, shard_age, rounded)

    up = _gauge("shardwatch_source_up", names)
    on = _gauge("shardwatch_source_enabled", names)
    status = _gauge("shardwatch_source_status", names)
    enabled = set()
    for source_id, is_enabled, current in StreamSource.objects.values_list("pk", "enabled", "status"):
        labels = {"source": source_id}
        up.add_metric(names.values(("source",), labels), 1.0 if is_enabled and current == StreamSource.Status.ACTIVE else 0.0)
        # A disabled source is read by nobody on purpose, and up says 0 for it: rules.yml joins
        # every source rule on this, as the built-in alerts use only enabled sources
        # (streams.selectors.sources_watched).
        on.add_metric(names.values(("source",), labels), 1.0 if is_enabled else 0.0)
        if is_enabled:
            enabled.add(source_id)
        for value in StreamSource.Status.values:
            status.add_metric(names.values(("source", "status"), {**labels, "status": value}), 1.0 if value == current else 0.0)
    yield from (up, on, status)

    # Enabled sources only, as the built-in alert (alerts.conditions).
    stuck = _gauge("shardwatch_shards_stuck", names)
    counted = dict.fromkeys(sorted(enabled), 0)
    for item in shards_stuck(now=now, still_for_s=SHARD_STUCK_S, source_ids=list(enabled)):
        counted[item["shard"].stream.source_id] += 1
    for source_id, count in counted.items():
        stuck.add_metric(names.values(("source",), {"source": source_id}), count)
    yield stuck

    shards = _gauge("shardwatch_shards", names)
    for source_id, states in shards_by_state().items():
        for state, count in states.items():
            shards.add_metric(names.values(("source", "state"), {"source": source_id, "state": state}), count)
    yield shards

    held = _gauge("shardwatch_leases_held")
    per_worker: dict[str, int] = defaultdict(int)
    for reader in readers_alive(now=now):
        per_worker[reader["name"]] += reader["shards"]
    for worker, count in sorted(per_worker.items()):
        held.add_metric([worker], count)
    yield held


def _trigger_gauges(*, names: _Names, now: datetime, enabled: dict[int, bool]):
    backlog = triggers_backlog(now=now)
    age = _gauge("shardwatch_trigger_iterator_age_seconds", names)
    cursors = _gauge("shardwatch_trigger_cursors_waiting", names)
    attempts = _gauge("shardwatch_trigger_batch_attempts", names)
    on = _gauge("shardwatch_trigger_enabled", names)
    for trigger_id, behind in sorted(backlog.items()):
        labels = names.values(("trigger",), {"trigger": trigger_id})
        age.add_metric(labels, behind["iterator_age_s"])
        cursors.add_metric(labels, behind["cursors_waiting"])
        attempts.add_metric(labels, behind["batch_attempts"])
        # A disabled trigger's backlog grows by design: rules.yml joins on this to leave it out.
        on.add_metric(labels, 1.0 if enabled.get(trigger_id) else 0.0)
    yield from (age, cursors, attempts, on)


def _process_gauges(*, now: datetime):
    roles = heartbeats_by_role(now=now)
    age = _gauge("shardwatch_heartbeat_age_seconds")
    alive = _gauge("shardwatch_processes_alive")
    for role, seen in sorted(roles.items()):
        if seen["seen_at"] is not None:
            age.add_metric([role], max(0.0, (now - seen["seen_at"]).total_seconds()))
        alive.add_metric([role], seen["alive"])
    yield from (age, alive)

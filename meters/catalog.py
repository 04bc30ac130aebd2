"""Every meter Shardwatch records: its Prometheus name, kind, help, label names and, for a
histogram, its buckets. /metrics, the charts and the alert rules read these names; one home
keeps them agreeing.

Names follow https://prometheus.io/docs/practices/naming/: a `shardwatch_` prefix, base units,
`_total` on counters. Label values are ids (see meters.models); the scrape adds names.

Counters and histograms are counted where the work happens and added up in the database
(meters.store). Gauges (iterator age, leases held, ...) are read from the state the database
already holds, at scrape time, by the layer that owns that state; those charted over 24 hours
are also sampled once a tick with meter_sample. Gauges' labels here are the ids they are
keyed by; a scrape adds names (table, region, trigger_name) beside them.
"""

from dataclasses import dataclass

COUNTER = "counter"
HISTOGRAM = "histogram"
# Gauges are read from the database's state at scrape time (see below); the ones in SPECS are
# those also sampled into MeterMinute (the highest value of each minute) for the charts.
GAUGE = "gauge"

# Seconds. Lambda-like batch durations reach the 900 s timeout; latencies are mostly sub-second.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class MeterSpec:
    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    # Also kept per minute (MeterMinute) for the charts' 24 hours.
    charted: bool = False


SPECS = {
    spec.name: spec
    for spec in [
        MeterSpec("shardwatch_records_read_total", COUNTER, "Change records read from the stream and stored.", ("source",), charted=True),
        MeterSpec(
            "shardwatch_iterator_age_seconds", GAUGE,
            "Lag: each readable shard's iterator age at its last poll (Lambda's IteratorAge) plus the seconds since "
            "that poll, the highest over the source's shards (resolution: one lease renewal, 5 s with the default "
            "SHARDWATCH_LEASE_S of 15; a caught-up shard's polls are written at renewals only, so an idle source "
            "reads up to that plus one idle poll, never less than the truth).",
            ("source",), charted=True,
        ),
        MeterSpec(
            "shardwatch_trigger_iterator_age_seconds", GAUGE,
            "Age of the oldest stored record the trigger has not processed yet.", ("trigger",), charted=True,
        ),
        MeterSpec("shardwatch_polls_total", COUNTER, "GetRecords calls made.", ("source",)),
        MeterSpec(
            "shardwatch_poll_errors_total", COUNTER, "Failed GetRecords and GetShardIterator calls, by AWS error code.",
            ("source", "error"), charted=True,
        ),
        MeterSpec("shardwatch_gaps_total", COUNTER, "Gaps recorded: records the stream trimmed before they were read.", ("source",)),
        MeterSpec(
            "shardwatch_ingest_latency_seconds", HISTOGRAM, "From a GetRecords response to its records committed.",
            ("source",), LATENCY_BUCKETS,
        ),
        MeterSpec(
            "shardwatch_push_latency_seconds", HISTOGRAM, "From records committed to their push to browsers sent.",
            ("source",), LATENCY_BUCKETS,
        ),
        MeterSpec(
            "shardwatch_trigger_invocations_total", COUNTER, "Trigger invocations, by outcome.", ("trigger", "outcome"),
            charted=True,
        ),
        MeterSpec(
            "shardwatch_trigger_batch_duration_seconds", HISTOGRAM, "How long one trigger invocation took.",
            ("trigger",), DURATION_BUCKETS,
        ),
        MeterSpec("shardwatch_trigger_records_sent_total", COUNTER, "Records sent to a trigger's target.", ("trigger",)),
        MeterSpec(
            "shardwatch_trigger_records_filtered_total", COUNTER, "Records a trigger's filter patterns left out.", ("trigger",)
        ),
        MeterSpec("shardwatch_trigger_retries_total", COUNTER, "Batches retried after a failed invocation.", ("trigger",)),
        MeterSpec("shardwatch_trigger_bisects_total", COUNTER, "Batches split in two (BisectBatchOnFunctionError).", ("trigger",)),
        MeterSpec(
            "shardwatch_trigger_dead_letters_total", COUNTER,
            "Dead letters added: batches given up on, one each however many records it held "
            "(the records: shardwatch_trigger_dead_letter_records_total).",
            ("trigger",),
        ),
        MeterSpec(
            "shardwatch_trigger_dead_letter_records_total", COUNTER,
            "Records in the batches given up on and kept as dead letters.", ("trigger",),
        ),
        # Gauges read at scrape time only.
        MeterSpec(
            "shardwatch_shard_iterator_age_seconds", GAUGE,
            "Lag of the shards furthest behind in each source, as shardwatch_iterator_age_seconds (at most 3 a source; "
            "resolution: one lease renewal, 5 s with the default SHARDWATCH_LEASE_S of 15).",
            ("source", "shard"),
        ),
        MeterSpec(
            "shardwatch_source_record_times_rounded", GAUGE,
            "1 when the source's record times are rounded to the minute (DynamoDB Local): ages come from poll and receive times.",
            ("source",),
        ),
        MeterSpec(
            "shardwatch_source_up", GAUGE,
            "1 when the source is enabled and active, else 0 (also when disabled: see shardwatch_source_enabled).",
            ("source",),
        ),
        MeterSpec("shardwatch_source_enabled", GAUGE, "1 when the source is enabled, else 0.", ("source",)),
        MeterSpec("shardwatch_source_status", GAUGE, "1 for the source's current status, 0 for the others.", ("source", "status")),
        MeterSpec("shardwatch_shards", GAUGE, "Shards known, by state.", ("source", "state")),
        MeterSpec("shardwatch_leases_held", GAUGE, "Shard leases held by each stream reader (host:pid).", ("worker",)),
        MeterSpec(
            "shardwatch_trigger_cursors_waiting", GAUGE, "Trigger cursors with stored records not processed yet.", ("trigger",)
        ),
        MeterSpec(
            "shardwatch_shards_stuck", GAUGE,
            "Shards of an enabled source held by a reader, with records waiting, whose checkpoint has not moved for 5 minutes.",
            ("source",),
        ),
        MeterSpec(
            "shardwatch_trigger_batch_attempts", GAUGE,
            "The most retries of one batch a trigger has under way (TriggerCursor.attempt); 0 when none is retrying.",
            ("trigger",),
        ),
        MeterSpec("shardwatch_trigger_enabled", GAUGE, "1 when the trigger is enabled, else 0.", ("trigger",)),
        MeterSpec("shardwatch_heartbeat_age_seconds", GAUGE, "Seconds since a process of the role (worker, reader or beat) last wrote its heartbeat.", ("role",)),
        MeterSpec("shardwatch_processes_alive", GAUGE, "Processes of the role (worker, reader or beat) whose heartbeat is at most 30 s old.", ("role",)),
    ]
}

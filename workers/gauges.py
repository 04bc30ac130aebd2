"""The charted gauges' history: once a tick (SHARDWATCH_GAUGES_SAMPLE_S, from beat) the lag of
every source and the iterator age of every trigger are kept per minute (meters.store.
meter_sample keeps each minute's highest), for the charts' 24 hours; and what is older than
the charts show is pruned, with the counters of sources and triggers deleted an hour ago. Here, in workers, because it reads both streams' and workers' state.
"""

from datetime import datetime, timedelta

from meters.heartbeats import heartbeats_prune
from meters.store import meter_sample, minutes_prune, series_prune
from streams.models import StreamSource
from streams.selectors import sources_lag
from workers.models import Trigger
from workers.selectors import triggers_iterator_age

# The charts show 24 hours; an hour more keeps a whole first minute for a chart drawn late.
MINUTES_KEPT = timedelta(hours=25)
# A process silent this long is gone, not slow: its heartbeat row goes.
HEARTBEATS_KEPT_S = 24 * 3600
# A deleted source's or trigger's counters are ended once nothing has been added to them for
# this long (meters.store.series_prune): a runner or reader may still flush counts of it.
SERIES_GRACE = timedelta(hours=1)


def gauges_sample(*, now: datetime) -> int:
    """Sample shardwatch_iterator_age_seconds per source (that has a readable shard) and
    shardwatch_trigger_iterator_age_seconds per trigger into `now`'s minute. Returns how many
    samples it wrote."""
    written = 0
    for source_id, lag in sources_lag(now=now).items():
        if lag.lag_s is not None:
            meter_sample(name="shardwatch_iterator_age_seconds", labels={"source": source_id}, value=lag.lag_s, at=now)
            written += 1
    for trigger_id, age in triggers_iterator_age(now=now).items():
        meter_sample(name="shardwatch_trigger_iterator_age_seconds", labels={"trigger": trigger_id}, value=age, at=now)
        written += 1
    return written


def meters_prune(*, now: datetime) -> dict[str, int]:
    """Delete per-minute meter rows older than MINUTES_KEPT, heartbeats silent for
    HEARTBEATS_KEPT_S, and the counters of deleted sources and triggers once SERIES_GRACE has
    passed without a count. Returns how many of each: {"minutes", "heartbeats", "series"}."""
    return {
        "minutes": minutes_prune(before=now - MINUTES_KEPT),
        "heartbeats": heartbeats_prune(older_than_s=HEARTBEATS_KEPT_S),
        "series": (
            series_prune(label="source", kept=set(StreamSource.objects.values_list("pk", flat=True)), before=now - SERIES_GRACE)
            + series_prune(label="trigger", kept=set(Trigger.objects.values_list("pk", flat=True)), before=now - SERIES_GRACE)
        ),
    }

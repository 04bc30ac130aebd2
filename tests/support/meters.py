"""Reading what the code under test counted (meters.store), as /metrics would.

Counts wait in the process's memory until meters_flush() (tests set SHARDWATCH_METERS_FLUSH_S
to 0, so no thread flushes them); tests/conftest.py forgets what earlier tests left there.
"""

from meters.models import Meter
from meters.store import labels_key, meters_flush


def meter_value(name: str, **labels) -> float:
    """The stored value of series `name` with `labels` after a flush; 0 when never counted."""
    meters_flush()
    row = Meter.objects.filter(name=name, labels=labels_key(labels=labels)).first()
    return row.value if row is not None else 0.0

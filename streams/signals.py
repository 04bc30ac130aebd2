"""What `streams` tells the apps above it, without knowing who listens.

`streams` never imports `workers` or `dashboard` (the layers contract in .importlinter holds
this). Where an upper layer must act on something that happened down here, `streams` sends
a signal and the upper app connects a receiver in its AppConfig.ready.
"""

from django.dispatch import Signal

# Sent once a GetRecords batch and its checkpoint have committed, and only when the batch
# stored new records. Receivers get source_id=<int>, shard_id=<int> (Shard pk; a batch is one
# shard's), record_ids=<list[int]> (the new ChangeRecord ids, in sequence order) and
# oldest_at=<aware datetime>: when the oldest new record counts from for iterator ages (its
# ApproximateCreationDateTime, or its received_at where the source's record times are rounded
# to the minute; streams.lag). They run in the reader's task, after the commit:
# they must be quick (enqueue, don't work), and what they raise reaches the reader.
batch_saved = Signal()

# Sent by the periodic retention task once it has deleted the records past their source's
# retention_days. No arguments. Receivers delete what was built on those records (and work out
# again what counted from them), in the same
# task and before it ends (the beat schedule runs it every SHARDWATCH_RETENTION_INTERVAL_S).
records_expired = Signal()

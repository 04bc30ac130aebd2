"""Beat's scheduler (settings.CELERY_BEAT_SCHEDULER): meters.heartbeats.HeartbeatScheduler,
which also evaluates the "no worker alive" rules and sends their notifications itself.

Why beat: the evaluation and the sends of every other rule run on the default queue, which
only `worker` processes consume. When every worker is dead nobody would evaluate, and the
one that comes back is alive again, so the no_worker alert for role:worker could never
notify. Beat is the process that outlives them.

What must stay true:
- Every SHARDWATCH_ALERTS_INTERVAL_S, tick() evaluates the no_worker rules only
  (alerts.evaluation.alerts_evaluate with conditions), claiming each transition as a worker's
  evaluation does, so the two never both notify one transition.
- The sends run in one background thread, never on the scheduling thread, and one pass at
  a time: each send is bounded (alerts.delivery.SEND_TIMEOUT_S), and a delivery left unsent
  while a pass is still running is found due by a later evaluation (SWEEP_GRACE_S). A
  delivery is claimed before it is sent, so beat and a worker never both send it.
- A failure here is logged and never stops the schedule, nor beat's heartbeat.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from alerts.delivery import delivery_send
from alerts.evaluation import alerts_evaluate
from alerts.models import Rule
from meters.heartbeats import HeartbeatScheduler

log = logging.getLogger(__name__)

BEAT_CONDITIONS = {Rule.Condition.NO_WORKER}


def _deliveries_send(delivery_ids: list[int]) -> None:
    try:
        for delivery_id in delivery_ids:
            try:
                close_old_connections()
                delivery_send(delivery_id=delivery_id)
            except Exception:
                log.exception("alerts: beat could not send delivery %s", delivery_id)
    finally:
        connection.close()


class AlertingScheduler(HeartbeatScheduler):
    """HeartbeatScheduler that evaluates the no_worker rules every
    SHARDWATCH_ALERTS_INTERVAL_S and sends what they call for from a thread of its own."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_interval = min(self.max_interval, settings.SHARDWATCH_ALERTS_INTERVAL_S)
        self.alerts_at: float | None = None
        self.sending: threading.Thread | None = None

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        at = time.monotonic()
        if self.alerts_at is None or at - self.alerts_at >= settings.SHARDWATCH_ALERTS_INTERVAL_S:
            self.alerts_at = at
            self._alerts_evaluate()
        return interval

    def _alerts_evaluate(self) -> None:
        try:
            close_old_connections()
            result = alerts_evaluate(now=timezone.now(), conditions=BEAT_CONDITIONS)
        except Exception:
            log.exception("alerts: beat's evaluation of the no_worker rules failed")
            return
        finally:
            connection.close()
        to_send = [*result.deliveries, *result.due]
        if not to_send or (self.sending is not None and self.sending.is_alive()):
            return
        self.sending = threading.Thread(target=_deliveries_send, args=(to_send,), name="alert-sends", daemon=True)
        self.sending.start()

"""Running the alert evaluation in the test process as beat and the workers do: evaluate, then
send each delivery it made or found due, one call each, as the send_delivery tasks would."""

from alerts.delivery import delivery_send
from alerts.evaluation import alerts_evaluate


def evaluate_and_send(*, now):
    """One evaluation tick at `now`, with its deliveries sent. Returns the Evaluation."""
    result = alerts_evaluate(now=now)
    for delivery_id in [*result.deliveries, *result.due]:
        delivery_send(delivery_id=delivery_id, now=now)
    return result

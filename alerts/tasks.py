"""Celery tasks of the alerts: thin adapters. Beat runs evaluate_alerts every
SHARDWATCH_ALERTS_INTERVAL_S (15 s); each delivery is sent by a task of its own, so a slow or
failing channel holds up neither the others nor the evaluation."""

from celery import shared_task
from django.db import close_old_connections, transaction
from django.utils import timezone

from alerts.delivery import delivery_send
from alerts.evaluation import alerts_evaluate


def deliveries_queue(*, delivery_ids: list[int]) -> None:
    """Queue a send of each delivery once the current transaction (if any) has committed."""
    for delivery_id in delivery_ids:
        transaction.on_commit(lambda pk=delivery_id: send_delivery.delay(pk))


@shared_task(ignore_result=True)
def evaluate_alerts() -> None:
    close_old_connections()
    result = alerts_evaluate(now=timezone.now())
    deliveries_queue(delivery_ids=[*result.deliveries, *result.due])


@shared_task(ignore_result=True)
def send_delivery(delivery_id: int) -> None:
    close_old_connections()
    sent = delivery_send(delivery_id=delivery_id)
    if sent.retry_in_s is not None:
        send_delivery.apply_async((delivery_id,), countdown=sent.retry_in_s)

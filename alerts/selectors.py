"""Reading alerts for the dashboard: what fires, what is silenced, their history and deliveries."""

from alerts.models import AlertState, AlertTransition, Delivery

HISTORY_SHOWN = 100
DELIVERIES_SHOWN = 100


def alerts_firing(*, now) -> list[AlertState]:
    """Firing alerts of enabled rules that are not silenced, newest first, with their rule.
    One query: the banner of every page reads this. (A disabled rule is not evaluated, so its
    alerts would otherwise stay firing on the page forever.)"""
    return [state for state in AlertState.objects.filter(status=AlertState.Status.FIRING, rule__enabled=True)
            .select_related("rule").order_by("-fired_at", "-id") if not state.silenced(now=now)]


def alerts_silenced(*, now) -> list[AlertState]:
    """Alerts silenced until a time still to come, whatever their status, with their rule."""
    return list(AlertState.objects.filter(silenced_until__gt=now).select_related("rule").order_by("silenced_until"))


def alerts_history(*, limit: int = HISTORY_SHOWN) -> list[AlertTransition]:
    """The newest transitions first, with their rule and state."""
    return list(AlertTransition.objects.select_related("rule", "state").order_by("-at", "-id")[:limit])


def deliveries_recent(*, limit: int = DELIVERIES_SHOWN) -> list[Delivery]:
    """The newest deliveries first, with channel and transition."""
    return list(Delivery.objects.select_related("channel", "transition__rule").order_by("-created_at", "-id")[:limit])

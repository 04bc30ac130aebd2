"""What every page's template gets besides the view's context."""

from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from alerts.models import AlertState
from alerts.selectors import alerts_firing

# The banner names this many firing alerts and counts the rest: templates/_alert_banner.html
# and GET /api/alerts/firing (static/js/alert_banner.js) alike.
BANNER_NAMED = 5


def alerts_banner(*, firing: list[AlertState]) -> dict:
    """What the banner shows of `firing` (alerts_firing's list): {"count", "named" (the first
    BANNER_NAMED), "more" (how many are left unnamed)}."""
    return {"count": len(firing), "named": firing[:BANNER_NAMED], "more": max(0, len(firing) - BANNER_NAMED)}


def alerts_firing_banner(request) -> dict:
    """`alerts_banner`: alerts_banner of the firing, unsilenced alerts, for the banner in
    base.html; none for a user without alerts.view_alertstate. Lazy, so one query runs only on
    pages that render the banner for a logged-in user."""

    def banner():
        user = getattr(request, "user", None)
        if user is None or not user.has_perm("alerts.view_alertstate"):
            return alerts_banner(firing=[])
        return alerts_banner(firing=alerts_firing(now=timezone.now()))

    return {"alerts_banner": SimpleLazyObject(banner)}

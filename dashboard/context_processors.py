"""What every page's template gets besides the view's context."""

from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from alerts.selectors import alerts_firing


def alerts_firing_banner(request) -> dict:
    """`alerts_firing`: the firing, unsilenced alerts for the banner in base.html. Lazy, so
    one query runs only on pages that render the banner for a logged-in user."""
    return {"alerts_firing": SimpleLazyObject(lambda: alerts_firing(now=timezone.now()))}

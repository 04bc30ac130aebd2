"""Small HTTP helpers shared by the JSON API and the export views."""

from functools import wraps

from django.http import JsonResponse

from streams.feed import FeedFilter, FilterError


def api_login_required(view):
    """Session auth for JSON endpoints: 401 JSON for anonymous callers instead of a redirect."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": "Log in first: the API uses the dashboard's session."}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


def bad_request(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


def int_param(request, name: str, *, default=None, minimum=None, maximum=None):
    """A whole-number query parameter, or FilterError naming it."""
    raw = request.GET.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FilterError(f"{name} must be a whole number.") from None
    if minimum is not None and value < minimum:
        raise FilterError(f"{name} must be at least {minimum}.")
    if maximum is not None:
        value = min(value, maximum)
    return value


def feed_filter(request) -> FeedFilter:
    return FeedFilter.from_params(request.GET)

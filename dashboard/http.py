"""Small HTTP helpers shared by the pages, the JSON API and the export views, among them the
permission checks (the permissions are dashboard/roles.py's)."""

from functools import wraps

from django.contrib.auth.decorators import login_required, permission_required
from django.http import JsonResponse

from streams.feed import FeedFilter, FilterError


def page_permission_required(perm: str):
    """For pages and their form posts: an anonymous visitor is sent to the login page, a
    logged-in user without `perm` ("app_label.codename") gets 403."""

    def decorator(view):
        return login_required(permission_required(perm, raise_exception=True)(view))

    return decorator


def api_permission_required(perm: str):
    """For JSON endpoints: 401 JSON for anonymous callers instead of a redirect (a script cannot
    follow it), 403 JSON for a logged-in user without `perm` ("app_label.codename")."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return JsonResponse({"error": "Log in first: the API uses the dashboard's session."}, status=401)
            if not request.user.has_perm(perm):
                return permission_refused(perm=perm)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def permission_refused(*, perm: str) -> JsonResponse:
    return JsonResponse({"error": f"Your role does not allow this: it needs the permission {perm}."}, status=403)


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

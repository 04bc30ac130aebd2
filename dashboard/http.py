"""Small HTTP helpers shared by the pages, the JSON API and the export views, among them the
permission checks (the permissions are dashboard/roles.py's) and who an API request acts for
(the session's user, or an API token's owner: dashboard/tokens.py)."""

from collections.abc import Mapping
from functools import wraps

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.utils import timezone

from audit.chain import audit_record
from dashboard.tokens import TokenRefused, token_authenticate

from streams.feed import FeedFilter, FilterError
from streams.masking import UNMASK_PERMISSION, Masking
from streams.records import masking_load


def page_permission_required(perm: str | tuple[str, ...]):
    """For pages and their form posts: an anonymous visitor is sent to the login page, a
    logged-in user without `perm` ("app_label.codename", or a tuple of them, all needed) gets 403."""

    def decorator(view):
        return login_required(permission_required(perm, raise_exception=True)(view))

    return decorator


def api_user(request):
    """Who a JSON API or export request acts for: with an Authorization header, the owner of
    the API token it sends, and only that (the session is not looked at); else the session's
    user. Raises TokenRefused for a header that names no usable token.

    Only the API and the exports call this: pages, websockets and the admin never read the
    header, so a token opens none of them. The API reads only (GET), so a token never stands in
    for a session on a request that CSRF protects."""
    authorization = request.headers.get("Authorization")
    if authorization is None:
        return request.user
    return token_authenticate(authorization=authorization, now=timezone.now())


async def api_auser(request):
    """api_user for async views (the export)."""
    if request.headers.get("Authorization") is None:
        return await request.auser()
    return await sync_to_async(api_user)(request)


def unauthenticated(*, reason: str = "") -> JsonResponse:
    """401 JSON for the API and the exports, with RFC 6750's challenge for bearer tokens."""
    message = reason or "Log in first, or send Authorization: Bearer <API token>."
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="shardwatch"'
    return response


def api_permission_required(perm: str):
    """For JSON endpoints: 401 JSON for anonymous callers and refused tokens instead of a
    redirect (a script cannot follow it), 403 JSON for a user without `perm`
    ("app_label.codename"). The view's request.user is who it acts for (api_user)."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                user = api_user(request)
            except TokenRefused as exc:
                return unauthenticated(reason=str(exc))
            if not user.is_authenticated:
                return unauthenticated()
            if not user.has_perm(perm):
                return permission_refused(perm=perm)
            request.user = user
            try:
                return view(request, *args, **kwargs)
            except UnmaskRefused:
                return permission_refused(perm=UNMASK_PERMISSION)

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


UNMASKED_PARAM = "unmasked"
# Query parameters whose values come from items (a key, an attribute path, text, an event
# pattern's values): audit entries say they were given, never what they were.
ITEM_DATA_PARAMS = frozenset({"key", "path", "q", "pattern"})
GIVEN = "<given>"


def query_audited(*, params) -> list[list[str]]:
    """A query string's parameters as [[name, value], ...] for an audit entry, in their order:
    ITEM_DATA_PARAMS' values as GIVEN, the others (source ids, event names, times, record ids,
    paging) as given."""
    if hasattr(params, "lists"):  # a QueryDict
        pairs = params.lists()
    elif isinstance(params, Mapping):  # a socket's subscribe message
        pairs = ((name, value if isinstance(value, list) else [value]) for name, value in params.items())
    else:  # (name, value) pairs
        pairs = ((name, [value]) for name, value in params)
    return [[name, GIVEN if name in ITEM_DATA_PARAMS else value] for name, values in pairs for value in values]


class UnmaskRefused(PermissionDenied):
    """Asked to see item data unmasked without UNMASK_PERMISSION."""


def unmask_asked(params) -> bool:
    """Whether a query string (or a socket's subscribe filter) asks for ?unmasked=1."""
    return str(params.get(UNMASKED_PARAM) or "").strip().lower() in ("1", "true", "yes", "on")


def masking_for(*, user, unmasked: bool, request=None, surface: str) -> Masking:
    """The masking a viewer sees item data through: every source's rules (streams.records.
    masking_load), or none when `unmasked` was asked for and `user` holds UNMASK_PERMISSION.

    Each unmasked view is written to the audit log ("streams.changerecord.unmask", with
    `surface`, such as "record", the request's path, and its query as query_audited gives it:
    which records and filters, never the item values a filter was given). Raises UnmaskRefused (Django answers 403) when `unmasked` is asked for
    without the permission: a silent masked answer would look like unmasked data to a script."""
    if not unmasked:
        return masking_load()
    if not user.has_perm(UNMASK_PERMISSION):
        raise UnmaskRefused("Seeing item data unmasked needs the Admin role (streams.view_unmasked_changerecord).")
    audit_record(actor=user, action="streams.changerecord.unmask", request=request,
                 details={"surface": surface, "path": request.path if request is not None else "",
                          "query": query_audited(params=request.GET) if request is not None else []})
    return masking_load(unmasked=True)


def request_masking(request, *, surface: str) -> Masking:
    """masking_for the request's user and its ?unmasked= (unmask_asked)."""
    return masking_for(user=request.user, unmasked=unmask_asked(request.GET), request=request, surface=surface)


def unmask_context(request, *, masking: Masking) -> dict:
    """What templates/dashboard/_unmask_control.html needs: whether this page shows data
    unmasked, whether masking rules apply to it (everyone is told so), whether "Show unmasked" is
    offered (to holders of UNMASK_PERMISSION), and the page's URL with ?unmasked= set and cleared."""
    unmasked = unmask_asked(request.GET)
    params = request.GET.copy()
    params.pop(UNMASKED_PARAM, None)
    masked_query = params.urlencode()
    params[UNMASKED_PARAM] = "1"
    masked_here = not unmasked and masking.active
    return {
        "unmask": {
            "shown_unmasked": unmasked,
            "masked_here": masked_here,
            "offered": masked_here and request.user.has_perm(UNMASK_PERMISSION),
            "unmasked_url": f"{request.path}?{params.urlencode()}",
            "masked_url": request.path + (f"?{masked_query}" if masked_query else ""),
        }
    }

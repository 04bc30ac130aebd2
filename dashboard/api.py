"""JSON for the overview page's live updates."""

from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

# One decorator for every JSON endpoint (dashboard/http.py): 401 JSON for anonymous callers,
# never a redirect to the login page, which a script cannot follow.
from dashboard.http import api_login_required, bad_request, int_param
from streams.feed import FilterError
from streams.selectors import source_health
from workers.selectors import invocations_after
from workers.timeline import InvocationFilter, invocation_row

__all__ = ["api_login_required", "api_sources"]


@never_cache
@require_GET
@api_login_required
def api_sources(request):
    """`GET /api/sources`: every source's health, as the overview shows it; static/js/overview.js
    polls it every few seconds. Times are ISO 8601 in UTC, or null.

    {"now": "...", "sources": [{
      "id", "table", "region", "endpoint_url", "view_type", "start_position", "retention_days",
      "enabled", "status", "status_display", "last_error", "last_error_at",
      "gaps": [{"id", "detected_at", "shard_id", "after_sequence_number", "reason"}],  # newest 20
      "gap_count",
      "streams": [{"id", "arn", "label", "state", "state_display",
                   "shard_counts": {"open", "closed", "finished"}, "finished_hidden",
                   "shards": [<shard>]}],   # lineage roots; children nest under "children"
      "newest_record_at", "last_received_at", "lag_seconds", "last_polled_at",
      "per_minute": [60 counts, oldest minute first, the last is the minute now is in],
      "records_last_hour"}]}

    <shard>: {"shard_id", "parent_shard_id", "state", "state_display", "depth", "checkpoint",
    "last_polled_at", "last_polled_by", "last_record_at", "lease_held", "lease_expires_at",
    "error", "error_count", "children": [<shard>]}. Shards finished over 24 hours ago are left
    out (counted in finished_hidden).
    """
    now = timezone.now()
    return JsonResponse({"sources": source_health(now=now), "now": now})


@never_cache
@require_GET
@api_login_required
def api_invocations(request):
    """`GET /api/invocations?trigger=&outcome=&since=<id>&limit=`: invocations recorded after
    `since`, oldest first, as the timeline's websocket sends them; how a timeline catches up
    after a dropped socket. {"invocations": [...], "last_id": N, "more": bool}"""
    try:
        flt = InvocationFilter.from_params(request.GET)
        since = int_param(request, "since", default=0, minimum=0)
        limit = int_param(request, "limit", default=200, minimum=1, maximum=500)
    except FilterError as exc:
        return bad_request(str(exc))
    page = invocations_after(flt=flt, since=since, limit=limit)
    rows = [{**invocation_row(invocation), "trigger_name": invocation.trigger.name} for invocation in page]
    return JsonResponse({"invocations": rows, "last_id": rows[-1]["id"] if rows else since, "more": len(rows) == limit})

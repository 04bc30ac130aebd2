"""The JSON API (documented in docs/API.md): what the pages' scripts fetch, and what scripts
outside may read with the dashboard's session. What each record is shown as is streams.rows's;
this module adds the links and answers HTTP."""

from urllib.parse import urlencode

from django.http import Http404, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

# One decorator for every JSON endpoint (dashboard/http.py): 401 JSON for anonymous callers,
# never a redirect to the login page, which a script cannot follow; 403 JSON without the
# permission the endpoint names (dashboard/roles.py).

from alerts.selectors import alerts_firing
from dashboard.charts import RANGE_DEFAULT, source_series, trigger_series
from dashboard.context_processors import alerts_banner
from dashboard.http import (
    UNMASKED_PARAM,
    api_permission_required,
    bad_request,
    feed_filter,
    int_param,
    request_masking,
    unmask_asked,
)
from streams.feed import FilterError
from streams.lambda_event import lambda_event
from streams.models import ChangeRecord, StreamSource
from streams.masking import Masking
from streams.records import PAGE_MAX, item_history, item_history_of_record, record_get, record_neighbours, records_page
from streams.rows import feed_rows, item_history_detail, record_detail
from streams.selectors import readers_summary, source_health
from workers.selectors import invocations_after
from workers.timeline import InvocationFilter, invocation_row, invocation_rows_masked


@never_cache
@require_GET
@api_permission_required("streams.view_streamsource")
def api_sources(request):
    """`GET /api/sources`: every source's health, and the stream readers alive, as the overview
    shows them; static/js/overview.js polls it every few seconds. Times are ISO 8601 in UTC, or
    null.

    {"now": "...", "readers": <readers>, "sources": [{
      "id", "table", "region", "endpoint_url", "view_type", "start_position", "retention_days",
      "enabled", "status", "status_display", "last_error", "last_error_at",
      "gaps": [{"id", "detected_at", "shard_id", "after_sequence_number", "reason"}],  # newest 20
      "gap_count",
      "streams": [{"id", "arn", "label", "state", "state_display",
                   "shard_counts": {"open", "closed", "finished"}, "finished_hidden",
                   "shards": [<shard>],     # lineage roots; children nest under "children"
                   "consumers": <consumers>}],
      "newest_record_at", "last_received_at", "lag_seconds", "lag_since", "lag_rounded", "last_polled_at",
      "per_minute": [60 counts, oldest minute first, the last is the minute now is in],
      "records_last_hour"}]}

    <shard>: {"shard_id", "parent_shard_id", "state", "state_display", "depth", "checkpoint",
    "last_polled_at", "last_polled_by", "last_record_at", "lease_held", "lease_expires_at",
    "error", "error_count", "children": [<shard>]}. Shards finished over 24 hours ago are left
    out (counted in finished_hidden).

    <consumers>: the stream's Lambda event source mappings as discovery last looked them up
    (streams.consumers.stream_consumers): {"lookup": "" (not yet) | "listed" | "no_lambda"
    (DynamoDB Local) | "denied" | "unreachable" | "failed", "lookup_display", "error",
    "checked_at", "mappings": [{"uuid", "function_arn", "function_name", "state", "batch_size",
    "starting_position", "last_modified", "reads"}], "mappings_reading", "readers_per_shard"
    (null when unknown), "too_many", "reading_functions"}.

    <readers>: who reads the shards (streams.selectors.readers_summary): {"alive": [{"owner"
    (the reader's lease token, as its log lines name it), "name" (host:pid), "shards" (how many
    it holds), "renewed_at" (its latest lease renewal or saving poll)}], sorted by name; "shards" (readable
    shards, all sources), "waiting" (readable shards no live lease holds), "waiting_long" (those
    waiting longer than twice SHARDWATCH_LEASE_S and a SHARDWATCH_DISPATCH_INTERVAL_S),
    "reader_queue" (SHARDWATCH_READER_QUEUE), "warning" ("" or, while waiting_long is not 0,
    "N shards have no reader: is the reader worker running? (celery -A config worker -Q
    <reader_queue>)")}. A reader that holds no shard is not listed.
    """
    now = timezone.now()
    return JsonResponse({"sources": source_health(now=now), "readers": readers_summary(now=now), "now": now})


def _series_answer(*, request, series) -> JsonResponse:
    """The answer of a chart's series endpoint: `series(range_name=, now=)` (a function of
    dashboard.charts) for the request's ?range= (RANGE_DEFAULT when absent), or 400 for a range
    it does not know (its ValueError)."""
    try:
        body = series(range_name=request.GET.get("range") or RANGE_DEFAULT, now=timezone.now())
    except ValueError as exc:
        return bad_request(str(exc))
    return JsonResponse(body)


@never_cache
@require_GET
@api_permission_required("streams.view_streamsource")
def api_source_series(request):
    """`GET /api/series/sources?range=1h|6h|24h` (default 24h): each source's records read,
    poll errors and lag per step, as dashboard.charts.source_series gives them; the overview's
    charts fetch it. 400 for another range."""
    return _series_answer(request=request, series=source_series)


@never_cache
@require_GET
@api_permission_required("workers.view_trigger")
def api_trigger_series(request):
    """`GET /api/series/triggers?range=1h|6h|24h` (default 24h): each trigger's invocations by
    outcome and error rate per step, as dashboard.charts.trigger_series gives them; the Triggers
    page's charts fetch it. 400 for another range."""
    return _series_answer(request=request, series=trigger_series)


@never_cache
@require_GET
@api_permission_required("workers.view_invocation")
def api_invocations(request):
    """`GET /api/invocations?trigger=&outcome=&since=<id>&limit=`: invocations recorded after
    `since`, oldest first, as the timeline's websocket sends them; how a timeline catches up
    after a dropped socket. {"invocations": [...], "last_id": N, "more": bool}. Under masking,
    the error message of a trigger whose source has masking rules is streams.masking.WITHHELD."""
    try:
        flt = InvocationFilter.from_params(request.GET)
        since = int_param(request, "since", default=0, minimum=0)
        limit = int_param(request, "limit", default=200, minimum=1, maximum=500)
    except FilterError as exc:
        return bad_request(str(exc))
    masking = request_masking(request, surface="invocations")
    page = invocations_after(flt=flt, since=since, limit=limit)
    rows = invocation_rows_masked(
        rows=[{**invocation_row(invocation), "trigger_name": invocation.trigger.name} for invocation in page],
        masking=masking,
    )
    return JsonResponse({"invocations": rows, "last_id": rows[-1]["id"] if rows else since, "more": len(rows) == limit})


@require_GET
@api_permission_required("streams.view_changerecord")
def api_records(request):
    """`GET /api/records?<filters>&before=&since=&limit=`: feed rows, newest first; `before`
    pages back, `since` returns what was saved after an id, oldest first (a page's catch-up)."""
    try:
        flt = feed_filter(request)
        since = int_param(request, "since", minimum=0)
        before = int_param(request, "before", minimum=1)
        limit = int_param(request, "limit", default=50, minimum=1, maximum=PAGE_MAX)
    except FilterError as exc:
        return bad_request(str(exc))
    masking = request_masking(request, surface="api_records")
    page = records_page(flt=flt, masking=masking, before_id=before, after_id=since, limit=limit)
    rows = feed_rows(page)
    body = {"records": rows, "filter": flt.as_json()}
    # A search that stopped at its scan budget (streams.records.RecordsPage) goes on from where
    # it stopped, even with fewer rows than asked for, or none.
    full = len(rows) == limit
    if since is None:
        body["next_before"] = rows[-1]["id"] if full else page.resume_id
    else:
        if full:
            body["last_id"] = rows[-1]["id"]
        elif page.resume_id is not None:
            body["last_id"] = page.resume_id
        else:
            body["last_id"] = rows[-1]["id"] if rows else since
        body["more"] = full or page.resume_id is not None
    return JsonResponse(body)


def _with_unmasked(url: str, unmasked: bool) -> str:
    if not unmasked:
        return url
    return url + ("&" if "?" in url else "?") + f"{UNMASKED_PARAM}=1"


def record_detail_json(record: ChangeRecord, *, unmasked: bool = False) -> dict:
    """streams.rows.record_detail with the dashboard's links: the record page embeds it, and
    /api/records/<id> answers with it. `record` is as the viewer sees it (masked or not); its
    item history link names the item by its key where the key shows unmasked, and by this
    record where masking hides it. `unmasked` carries ?unmasked=1 onto the links."""
    previous, following = record_neighbours(record=record)
    if getattr(record, "is_masked", False):
        item_query = {"record": record.pk}
    else:
        item_query = {"key": record.item_key}
    links = {
        "self": reverse("dashboard:api_record", args=[record.pk]),
        "page": reverse("dashboard:record", args=[record.pk]),
        "item_history": reverse("dashboard:item", args=[record.source_id]) + "?" + urlencode(item_query),
        "previous": reverse("dashboard:record", args=[previous.pk]) if previous else None,
        "next": reverse("dashboard:record", args=[following.pk]) if following else None,
        "lambda_event": reverse("dashboard:api_lambda_event", args=[record.pk]),
    }
    return record_detail(record, links={name: url and _with_unmasked(url, unmasked) for name, url in links.items()})


def _record_or_404(request, pk: int, *, surface: str) -> ChangeRecord:
    masking = request_masking(request, surface=surface)
    try:
        return record_get(record_id=pk, masking=masking)
    except ChangeRecord.DoesNotExist:
        raise Http404("No such record.") from None


@require_GET
@api_permission_required("streams.view_changerecord")
def api_record(request, pk: int):
    """`GET /api/records/<id>[?unmasked=1]`: one record with its images, diff and links, as
    the caller's masking shows them."""
    record = _record_or_404(request, pk, surface="api_record")
    return JsonResponse(record_detail_json(record, unmasked=unmask_asked(request.GET)))


@require_GET
@api_permission_required("streams.view_changerecord")
def api_lambda_event(request, pk: int):
    """`GET /api/records/<id>/lambda-event[?unmasked=1]`: the record as a Lambda test event,
    indented, as the caller's masking shows it."""
    return JsonResponse(lambda_event([_record_or_404(request, pk, surface="api_lambda_event")]),
                        json_dumps_params={"indent": 2})


class ItemUnknown(ValueError):
    """Neither ?key= nor ?record= names an item; the message says what to give."""


def item_history_json(*, source: StreamSource, params, masking: Masking) -> dict:
    """One item's stored changes, oldest first, as `masking` shows them: the item page embeds
    it, and /api/items/<source_id> answers with it. `params` names the item by ?key= (its key
    as stored, canonical JSON) or ?record= (one of its records' ids, how a viewer whose masking
    hides the key opens it). Raises ItemUnknown without either, or for a record of another
    source."""
    record_id = str(params.get("record") or "").strip()
    item_key = params.get("key", "")
    if record_id:
        if not record_id.isdigit():
            raise ItemUnknown("record must be a record id (a whole number).")
        try:
            changes = item_history_of_record(record_id=int(record_id), masking=masking)
        except ChangeRecord.DoesNotExist:
            raise ItemUnknown("No such record.") from None
        if changes and changes[0].source_id != source.pk:
            raise ItemUnknown("That record is not of this source.")
        item_key = changes[0].item_key if changes else ""
    elif item_key:
        changes = item_history(source_id=source.pk, item_key=item_key, masking=masking)
    else:
        raise ItemUnknown('Which item? Give key (its key as canonical JSON, e.g. {"pk":{"S":"ORDER#1"}}) or record (one of its records).')
    return item_history_detail(source=source, item_key=item_key, changes=changes, truncated=len(changes) >= PAGE_MAX)


@require_GET
@api_permission_required("streams.view_changerecord")
def api_item(request, source_id: int):
    """`GET /api/items/<source_id>?key=<item_key>` or `?record=<record id>`: every stored change
    of one item, as the caller's masking shows them. Under masking that hides a key attribute,
    ?key= finds nothing (streams.records.item_history says why)."""
    try:
        source = StreamSource.objects.get(pk=source_id)
    except StreamSource.DoesNotExist:
        raise Http404("No such source.") from None
    masking = request_masking(request, surface="api_item")
    try:
        return JsonResponse(item_history_json(source=source, params=request.GET, masking=masking))
    except ItemUnknown as exc:
        return bad_request(str(exc))


@never_cache
@require_GET
@api_permission_required("alerts.view_alertstate")
def api_alerts_firing(request):
    """`GET /api/alerts/firing`: the firing, unsilenced alerts of the banner on every page;
    static/js/alert_banner.js polls it every 15 s. One query, as the banner's.

    {"count": <int>, "alerts": [{"id", "rule", "subject_label"}] (the newest BANNER_NAMED,
     dashboard.context_processors),
     "url": the Alerts page}
    """
    banner = alerts_banner(firing=alerts_firing(now=timezone.now()))
    return JsonResponse({
        "count": banner["count"],
        "alerts": [{"id": state.pk, "rule": state.rule.name, "subject_label": state.subject_label}
                   for state in banner["named"]],
        "url": reverse("dashboard:alerts"),
    })

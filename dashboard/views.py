"""Pages. Each gathers what its template needs from streams' selectors; pages that update
live get their data URLs through data-* attributes and one static JS file each."""

import json
from urllib.parse import urlencode

from django.http import Http404, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.selectors import AuditFilter, AuditFilterError, audit_actions, audit_entries_page
from dashboard.api import ItemUnknown, item_history_json, record_detail_json
from dashboard.charts import RANGES, chart_range
from dashboard.http import UNMASKED_PARAM, int_param, page_permission_required, request_masking, unmask_context
from dashboard.metrics import CONTENT_TYPE, metrics_access, metrics_text
from streams.feed import FeedFilter, FilterError
from streams.lambda_event import lambda_event
from streams.masking import Masking
from streams.models import ChangeRecord, StreamSource
from streams.records import PAGE_MAX, RecordsPage, record_get, records_page
from streams.rows import feed_rows, key_parts
from streams.selectors import readers_summary, source_health
from workers.models import INVOCATION_OUTCOMES, Invocation, Trigger
from workers.selectors import (
    dead_letters_list,
    invocation_records,
    invocations_for_record,
    invocations_timeline,
    trigger_health,
)
from workers.timeline import InvocationFilter


# What the overview's <template>s are rendered from (templates/dashboard/overview.html): a source
# with one gap, a stream with one event source mapping, and the readers panel with one reader,
# for its script to copy once per gap, per mapping and per reader; streams and shards have
# <template>s of their own.
OVERVIEW_BLANKS = {
    "blank_source": {"gaps": [{}], "streams": []},
    "blank_stream": {"label": "", "arn": "", "shards": [], "shard_counts": {}, "consumers": {"mappings": [{}]}},
    "blank_shard": {"children": []},
    "blank_readers": {"alive": [{}]},
}


def _chart_ranges(request) -> dict:
    """The range choice above the charts (templates/dashboard/_chart_ranges.html), pressed at
    the page's ?range= (static/js/lib/charts.js keeps it there), so reload and links keep it."""
    return {"chart_ranges": list(RANGES), "chart_range": chart_range(asked=request.GET.get("range"))}


@page_permission_required("streams.view_streamsource")
def overview(request):
    now = timezone.now()
    context = {"sources": source_health(now=now), "readers": readers_summary(now=now), "now": now, **_chart_ranges(request)}
    return render(request, "dashboard/overview.html", {**context, **OVERVIEW_BLANKS})


def _filter_context(request) -> dict:
    """The filter from the query string, or the error that explains why it is not valid."""
    try:
        flt = FeedFilter.from_params(request.GET)
        error = ""
    except FilterError as exc:
        flt, error = FeedFilter(), str(exc)
    return {
        "filter": flt,
        "filter_error": error,
        "filter_json": flt.as_json(),
        "sources": StreamSource.objects.order_by("table_name").only("pk", "table_name", "region"),
        "event_names": ChangeRecord.EventName.values,
    }


def _masked_context(request, *, surface: str) -> tuple[Masking, dict]:
    """The viewer's masking for a page that shows item data (dashboard.http.request_masking,
    which audits an unmasked view), and the unmask control's context."""
    masking = request_masking(request, surface=surface)
    return masking, unmask_context(request, masking=masking)


def _feed_query(flt: FeedFilter, unmask: dict) -> str:
    """The filter's query string, with unmasked=1 while the page shows data unmasked: the
    page's script sends it on with every fetch, socket subscription and export link."""
    params = flt.to_params()
    if unmask["unmask"]["shown_unmasked"]:
        params.append((UNMASKED_PARAM, "1"))
    return urlencode(params)


def _older_than(*, rows: list[dict], page: RecordsPage, limit: int) -> int | None:
    """Where the next older page starts: before the last row of a full page, or where a search
    stopped at its scan budget (RecordsPage.resume_id); None when nothing older is left."""
    if len(rows) == limit:
        return rows[-1]["id"]
    return page.resume_id


FEED_ROWS = 100


@page_permission_required("streams.view_changerecord")
def feed(request):
    context = _filter_context(request)
    masking, unmask = _masked_context(request, surface="feed")
    context.update(unmask, feed_query=_feed_query(context["filter"], unmask))
    page = records_page(flt=context["filter"], masking=masking, limit=FEED_ROWS) if not context["filter_error"] else RecordsPage()
    rows = feed_rows(page)
    older = _older_than(rows=rows, page=page, limit=FEED_ROWS)
    # Only a REMOVE can be a TTL deletion: the row template of a feed without REMOVEs needs no
    # TTL badge (templates/dashboard/_change_summary.html).
    events = context["filter"].events
    ttl_possible = not events or ChangeRecord.EventName.REMOVE in events
    return render(request, "dashboard/feed.html", {**context, "rows": rows, "older": older, "ttl_possible": ttl_possible})


HISTORY_PAGE = 100


@page_permission_required("streams.view_changerecord")
def history(request):
    context = _filter_context(request)
    masking, unmask = _masked_context(request, surface="history")
    context.update(unmask, feed_query=_feed_query(context["filter"], unmask))
    try:
        before = int_param(request, "before", minimum=1)
        limit = int_param(request, "limit", default=HISTORY_PAGE, minimum=1, maximum=PAGE_MAX)
    except FilterError as exc:
        before, limit, context["filter_error"] = None, HISTORY_PAGE, str(exc)
    page = RecordsPage() if context["filter_error"] else records_page(flt=context["filter"], masking=masking, before_id=before, limit=limit)
    rows = feed_rows(page)
    older = _older_than(rows=rows, page=page, limit=limit)
    unmasked = unmask["unmask"]["shown_unmasked"]
    links = {
        "older_url": _history_url(context["filter"], limit=limit, before=older, unmasked=unmasked) if older else "",
        "newest_url": _history_url(context["filter"], limit=limit, unmasked=unmasked) if before else "",
    }
    return render(request, "dashboard/history.html", {**context, **links, "rows": rows, "before": before})


def _history_url(flt: FeedFilter, *, limit: int, before: int | None = None, unmasked: bool = False) -> str:
    """A history page with the same filter: keyset paging, so `before` is a record id."""
    params = flt.to_params()
    if before:
        params.append(("before", str(before)))
    if limit != HISTORY_PAGE:
        params.append(("limit", str(limit)))
    if unmasked:
        params.append((UNMASKED_PARAM, "1"))
    return reverse("dashboard:history") + (f"?{urlencode(params)}" if params else "")


@page_permission_required("streams.view_changerecord")
def record(request, pk: int):
    masking, unmask = _masked_context(request, surface="record")
    try:
        change = record_get(record_id=pk, masking=masking)
    except ChangeRecord.DoesNotExist:
        raise Http404("No such record.") from None
    return render(
        request,
        "dashboard/record.html",
        {
            **unmask,
            "record": change,
            "detail": record_detail_json(change, unmasked=unmask["unmask"]["shown_unmasked"]),
            "key_parts": key_parts(keys=change.keys, key_schema=change.source.key_schema),
            "invocations": invocations_for_record(record_id=change.pk),
        },
    )


@page_permission_required("streams.view_changerecord")
def item(request, source_id: int):
    source = get_object_or_404(StreamSource, pk=source_id)
    masking, unmask = _masked_context(request, surface="item")
    try:
        history_json = item_history_json(source=source, params=request.GET, masking=masking)
    except ItemUnknown as exc:
        raise Http404(str(exc)) from None
    return render(request, "dashboard/item.html", {**unmask, "source": source, "history": history_json})


@page_permission_required("workers.view_trigger")
def triggers(request):
    now = timezone.now()
    return render(request, "dashboard/triggers.html", {"triggers": trigger_health(now=now), "now": now, **_chart_ranges(request)})


TIMELINE_ROWS = 100


@page_permission_required("workers.view_invocation")
def timeline(request):
    """Invocations newest first; timeline.js keeps the list current over /ws/invocations/."""
    error = ""
    try:
        flt = InvocationFilter.from_params(request.GET)
    except FilterError as exc:
        flt, error = InvocationFilter(), str(exc)
    triggers_all = list(Trigger.objects.order_by("name").only("pk", "name"))
    rows = [] if error else invocations_timeline(flt=flt, limit=TIMELINE_ROWS)
    masking, unmask = _masked_context(request, surface="timeline")
    for row in rows:
        row.error_message = masking.text_shown(row.error_message, source_id=row.trigger.source_id)
    return render(
        request,
        "dashboard/timeline.html",
        {
            **unmask,
            "invocations": rows,
            "trigger_id": flt.trigger_id,
            "outcome": flt.outcome,
            "filter_error": error,
            "triggers": triggers_all,
            "trigger_names": {str(trigger.pk): trigger.name for trigger in triggers_all},
            "outcomes": INVOCATION_OUTCOMES,
            "outcomes_json": dict(INVOCATION_OUTCOMES),
        },
    )


# A batch holds up to 10,000 records; drawing every diff would make a page of megabytes.
INVOCATION_DIFFS_SHOWN = 500


@page_permission_required("workers.view_invocation")
def invocation(request, pk: int):
    invocation = get_object_or_404(Invocation.objects.select_related("trigger", "shard"), pk=pk)
    masking, unmask = _masked_context(request, surface="invocation")
    records = [masking.record_mask(record) for record in invocation_records(invocation=invocation)]
    missing = len(invocation.record_ids) - len(records)
    payload = json.dumps(lambda_event(records), indent=2) if records else ""
    # The handler wrote its error and response from the records it was given, masked or not.
    source_id = invocation.trigger.source_id
    invocation.error_message = masking.text_shown(invocation.error_message, source_id=source_id)
    invocation.response_body = masking.text_shown(invocation.response_body, source_id=source_id)
    letters = list(invocation.dead_letters.order_by("-created_at"))
    for letter in letters:
        letter.reason = masking.text_shown(letter.reason, source_id=source_id)
    return render(
        request,
        "dashboard/invocation.html",
        {
            **unmask,
            "invocation": invocation,
            "payload": payload,
            "missing": missing,
            "records": feed_rows(records),
            # The page draws these as change lists; past the cap, a row links to its record.
            "diffs": [
                {"id": record.pk, "diff": record.diff, "diff_complete": record.diff_complete}
                for record in records[:INVOCATION_DIFFS_SHOWN]
            ],
            "diffs_capped": len(records) > INVOCATION_DIFFS_SHOWN,
            "diffs_shown": INVOCATION_DIFFS_SHOWN,
            "dead_letters": letters,
        },
    )


@page_permission_required("workers.view_deadletter")
def dead_letters(request):
    try:
        trigger_id = int_param(request, "trigger", minimum=1)
    except FilterError:
        trigger_id = None
    trigger = Trigger.objects.filter(pk=trigger_id).first() if trigger_id else None
    masking, unmask = _masked_context(request, surface="dead_letters")
    letters = dead_letters_list(trigger_id=trigger.pk if trigger else None)
    for letter in letters:
        letter.record_count = len(letter.record_ids)
        # A reason quotes the handler's last error, which may quote the records it was given.
        letter.reason = masking.text_shown(letter.reason, source_id=letter.trigger.source_id)
    return render(request, "dashboard/dead_letters.html", {**unmask, "dead_letters": letters, "trigger": trigger})


@require_GET
def metrics(request):
    """Prometheus' scrape: a bearer token (METRICS_TOKEN) or a login holding METRICS_PERMISSION;
    401 otherwise, with the challenge a scraper expects, or 403 to a login without it."""
    if not metrics_access(request=request):
        if request.user.is_authenticated:
            return HttpResponseForbidden("Reading /metrics needs a role in Shardwatch.\n", content_type="text/plain")
        response = HttpResponse(
            "Send Authorization: Bearer <METRICS_TOKEN>, or log in.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="shardwatch"'
        return response
    return HttpResponse(metrics_text(now=timezone.now()), content_type=CONTENT_TYPE)


@page_permission_required("audit.view_auditentry")
def audit(request):
    error = None
    try:
        flt = AuditFilter.from_params(request.GET)
    except AuditFilterError as exc:
        flt, error = AuditFilter(), str(exc)
    try:
        before_id = int_param(request, "before", minimum=1)
    except FilterError as exc:
        before_id, error = None, str(exc)
    entries, following = audit_entries_page(flt=flt, before_id=before_id)
    next_url = None
    if following is not None:
        next_url = "?" + urlencode([*flt.to_params(), ("before", str(following))])
    return render(request, "dashboard/audit.html", {
        "entries": entries, "filter": flt, "actions": audit_actions(), "error": error, "next_url": next_url,
    })


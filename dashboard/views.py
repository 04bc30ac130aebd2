"""Pages. Each gathers what its template needs from streams' selectors; pages that update
live get their data URLs through data-* attributes and one static JS file each."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from dashboard.api_records import feed_rows, item_history_json, record_detail_json
from dashboard.http import int_param
from streams.codec import typed_entry
from streams.feed import FeedFilter, FilterError
from streams.models import ChangeRecord, StreamSource
from streams.records import PAGE_MAX, record_get, records_page
from streams.selectors import source_health


@login_required
def overview(request):
    now = timezone.now()
    return render(request, "dashboard/overview.html", {"sources": source_health(now=now), "now": now})


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


FEED_ROWS = 100


@login_required
def feed(request):
    context = _filter_context(request)
    rows = feed_rows(records_page(flt=context["filter"], limit=FEED_ROWS)) if not context["filter_error"] else []
    older = rows[-1]["id"] if len(rows) == FEED_ROWS else None
    return render(request, "dashboard/feed.html", {**context, "rows": rows, "older": older})


HISTORY_PAGE = 100


@login_required
def history(request):
    context = _filter_context(request)
    try:
        before = int_param(request, "before", minimum=1)
        limit = int_param(request, "limit", default=HISTORY_PAGE, minimum=1, maximum=PAGE_MAX)
    except FilterError as exc:
        before, limit, context["filter_error"] = None, HISTORY_PAGE, str(exc)
    rows = [] if context["filter_error"] else feed_rows(records_page(flt=context["filter"], before_id=before, limit=limit))
    older = rows[-1]["id"] if len(rows) == limit else None
    links = {
        "older_url": _history_url(context["filter"], limit=limit, before=older) if older else "",
        "newest_url": _history_url(context["filter"], limit=limit) if before else "",
    }
    return render(request, "dashboard/history.html", {**context, **links, "rows": rows, "before": before})


def _history_url(flt: FeedFilter, *, limit: int, before: int | None = None) -> str:
    """A history page with the same filter: keyset paging, so `before` is a record id."""
    params = flt.to_params()
    if before:
        params.append(("before", str(before)))
    if limit != HISTORY_PAGE:
        params.append(("limit", str(limit)))
    return reverse("dashboard:history") + (f"?{urlencode(params)}" if params else "")


@login_required
def record(request, pk: int):
    try:
        change = record_get(record_id=pk)
    except ChangeRecord.DoesNotExist:
        raise Http404("No such record.") from None
    return render(
        request,
        "dashboard/record.html",
        {"record": change, "detail": record_detail_json(change), "key_parts": _key_parts(change)},
    )


def _key_parts(change: ChangeRecord) -> list[tuple[str, str, object]]:
    """(name, type tag, value) of each key attribute, hash key first."""
    schema = change.source.key_schema
    names = [name for name in schema if name in change.keys] + sorted(set(change.keys) - set(schema))
    return [(name, *typed_entry(change.keys[name])) for name in names]


@login_required
def item(request, source_id: int):
    source = get_object_or_404(StreamSource, pk=source_id)
    item_key = request.GET.get("key", "")
    if not item_key:
        raise Http404("Which item? Open item history from a record.")
    history_json = item_history_json(source=source, item_key=item_key)
    return render(request, "dashboard/item.html", {"source": source, "history": history_json})

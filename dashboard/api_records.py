"""Read-only JSON API for change records (documented in docs/API.md)."""

from django.http import Http404, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from dashboard.http import api_login_required, bad_request, feed_filter, int_param
from streams.feed import FilterError
from streams.lambda_event import lambda_event
from streams.models import ChangeRecord, StreamSource
from streams.push import feed_row, key_display
from streams.records import PAGE_MAX, item_history, record_as_row, record_get, record_neighbours, records_page


def feed_rows(records) -> list[dict]:
    return [feed_row(record_as_row(record), source=record.source) for record in records]


@require_GET
@api_login_required
def records(request):
    """Feed rows, newest first; `before` pages back, `since` returns what was saved after an id."""
    try:
        flt = feed_filter(request)
        since = int_param(request, "since", minimum=0)
        before = int_param(request, "before", minimum=1)
        limit = int_param(request, "limit", default=50, minimum=1, maximum=PAGE_MAX)
    except FilterError as exc:
        return bad_request(str(exc))
    page = records_page(flt=flt, before_id=before, after_id=since, limit=limit)
    rows = feed_rows(page)
    body = {"records": rows, "filter": flt.as_json()}
    if since is None:
        body["next_before"] = rows[-1]["id"] if len(rows) == limit else None
    else:
        body["last_id"] = rows[-1]["id"] if rows else since
        body["more"] = len(rows) == limit
    return JsonResponse(body)


def record_detail_json(record: ChangeRecord) -> dict:
    previous, following = record_neighbours(record=record)
    source = record.source
    return {
        **feed_row(record_as_row(record), source=source),
        "event_id": record.event_id,
        "event_version": record.event_version,
        "view_type": record.view_type,
        "size_bytes": record.size_bytes,
        "shard_id": record.shard.shard_id,
        "stream_arn": record.shard.stream.arn,
        "region": source.region,
        "keys": record.keys,
        "key_schema": source.key_schema,
        "old_image": record.old_image,
        "new_image": record.new_image,
        "diff": record.diff,
        "user_identity": record.user_identity,
        "received_at": record.received_at.isoformat(),
        "images_as_sent": record.images_as_sent,
        "shape_error": record.shape_error,
        "links": {
            "self": reverse("dashboard:api_record", args=[record.pk]),
            "page": reverse("dashboard:record", args=[record.pk]),
            "item_history": reverse("dashboard:item", args=[source.pk]) + "?" + _key_query(record.item_key),
            "previous": reverse("dashboard:record", args=[previous.pk]) if previous else None,
            "next": reverse("dashboard:record", args=[following.pk]) if following else None,
            "lambda_event": reverse("dashboard:api_lambda_event", args=[record.pk]),
        },
    }


def _key_query(item_key: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"key": item_key})


def _record_or_404(pk: int) -> ChangeRecord:
    try:
        return record_get(record_id=pk)
    except ChangeRecord.DoesNotExist:
        raise Http404("No such record.") from None


@require_GET
@api_login_required
def record(request, pk: int):
    return JsonResponse(record_detail_json(_record_or_404(pk)))


@require_GET
@api_login_required
def record_lambda_event(request, pk: int):
    return JsonResponse(lambda_event([_record_or_404(pk)]), json_dumps_params={"indent": 2})


def item_history_json(*, source: StreamSource, item_key: str) -> dict:
    changes = item_history(source_id=source.pk, item_key=item_key)
    return {
        "source_id": source.pk,
        "table": source.table_name,
        "item_key": item_key,
        "key": key_display(changes[0].keys, source.key_schema) if changes else "",
        "changes": [
            {
                **feed_row(record_as_row(change), source=source),
                "view_type": change.view_type,
                "diff": change.diff,
                # The item as it stood after this change: None once it was removed, and
                # unknown (absent) when the stream's view type does not carry new images.
                "state_after": change.new_image if change.event_name != "REMOVE" else None,
                "state_known": change.event_name == "REMOVE" or change.new_image is not None,
            }
            for change in changes
        ],
        "truncated": len(changes) >= PAGE_MAX,
    }


@require_GET
@api_login_required
def item(request, source_id: int):
    item_key = request.GET.get("key", "")
    if not item_key:
        return bad_request("key is required: the item's key as canonical JSON, e.g. {\"pk\":{\"S\":\"ORDER#1\"}}.")
    try:
        source = StreamSource.objects.get(pk=source_id)
    except StreamSource.DoesNotExist:
        raise Http404("No such source.") from None
    return JsonResponse(item_history_json(source=source, item_key=item_key))

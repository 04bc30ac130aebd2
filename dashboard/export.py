"""Exporting the filtered feed as NDJSON or CSV, streamed a page at a time so that exporting
millions of records never holds them all in memory.

NDJSON carries every value exactly. CSV is for spreadsheets, which run a cell as a formula when
its text begins with certain characters, and the text here is anyone's who can write to a
watched table (attribute names, keys, table names) or comes from a summary ("+status"): each
such cell gets an apostrophe in front (cell_neutralise)."""

import csv
import io
import json

from asgiref.sync import sync_to_async
from django.http import JsonResponse, StreamingHttpResponse
from django.utils import timezone

from audit.chain import audit_record
from dashboard.http import (
    UNMASK_PERMISSION,
    api_auser,
    bad_request,
    permission_refused,
    query_audited,
    unauthenticated,
    unmask_asked,
)
from dashboard.tokens import TokenRefused
from streams.feed import FeedFilter, FilterError
from streams.masking import Masking
from streams.models import ChangeRecord
from streams.records import masking_load, records_filtered, records_matching
from streams.rows import record_export

BATCH = 500
EXPORT_PERMISSION = "streams.export_changerecord"
CSV_COLUMNS = [
    "id", "approximate_creation_time", "table", "event_name", "key", "summary", "sequence_number",
    "shard_id", "is_ttl_delete", "keys", "old_image", "new_image",
]


# A spreadsheet runs a cell that begins with one of these. OWASP, CSV Injection
# (owasp.org/www-community/attacks/CSV_Injection): = + - @, tab, carriage return, line feed.
# OWASP ASVS 1.2.10 adds NUL (PostgreSQL cannot store it; SQLite can). The full-width forms of
# the first four are not in OWASP's list: Excel is reported to read them as operators in East
# Asian locales, and an apostrophe before such a value costs one visible character.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def cell_neutralise(*, text: str) -> str:
    """The text of one CSV cell, made so that a spreadsheet shows it and never runs it.

    Text that begins with a FORMULA_TRIGGERS character gets a single quote in front, as OWASP
    says. So does text that already begins with one, so that reading a cell back is always
    "drop one leading apostrophe, if there is one". The CSV writer quotes every field too
    (OWASP), so a comma inside a value never starts a cell of its own. Examples: "+status" ->
    "'+status", "'x" -> "''x", "pk=1" -> "pk=1".

    Not covered: a spreadsheet that splits this comma-separated file on another separator
    (Excel where the list separator is ";") and so ignores the quotes it was written with; a
    ";" inside a value could start a cell there. LibreOffice 7.4 told to split on ";" or tab
    made no formula of the tests' export.
    """
    if text.startswith(FORMULA_TRIGGERS) or text.startswith("'"):
        return "'" + text
    return text


def export_filters_audited(*, flt: FeedFilter) -> list[list[str]]:
    """flt's query parameters as [[name, value], ...] for an export's audit entry: source ids,
    event names, key_match and the time range as given; ITEM_DATA_PARAMS' values as GIVEN."""
    return query_audited(params=flt.to_params())


def _batch(flt: FeedFilter, before_id: int | None, masking: Masking) -> tuple[list[ChangeRecord], int | None]:
    """The next page of matching records as `masking` shows them (matched as shown: streams.
    records.records_matching), and the id to continue before (None at the end)."""
    queryset = records_filtered(flt=flt, masking=masking, queryset=ChangeRecord.objects.select_related("source", "shard__stream"))
    if before_id is not None:
        queryset = queryset.filter(id__lt=before_id)
    scanned = list(queryset.order_by("-id")[:BATCH])
    following = scanned[-1].pk if len(scanned) == BATCH else None
    return records_matching(flt=flt, masking=masking, records=scanned), following


def _ndjson(records) -> str:
    return "".join(json.dumps(record_export(record), ensure_ascii=False) + "\n" for record in records)


def _csv(records, *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", quoting=csv.QUOTE_ALL)
    if header:
        writer.writeheader()
    for record in records:
        row = record_export(record)
        for column in ("keys", "old_image", "new_image"):
            row[column] = "" if row[column] is None else json.dumps(row[column], ensure_ascii=False)
        # Every cell, not only the ones that carry DynamoDB's text today: a column added later
        # is covered without anyone remembering to.
        writer.writerow({column: cell_neutralise(text=str(row[column])) for column in CSV_COLUMNS})
    return buffer.getvalue()


async def export(request, fmt: str):
    if fmt not in ("ndjson", "csv"):
        return JsonResponse({"error": "Export as records.ndjson or records.csv."}, status=404)
    try:
        user = await api_auser(request)
    except TokenRefused as exc:
        return unauthenticated(reason=str(exc))
    if not user.is_authenticated:
        return unauthenticated()
    if not await user.ahas_perm(EXPORT_PERMISSION):
        return permission_refused(perm=EXPORT_PERMISSION)
    request.user = user
    try:
        flt = FeedFilter.from_params(request.GET)
    except FilterError as exc:
        return bad_request(str(exc))
    # The export's own audit entry says whether it was unmasked; no separate unmask entry.
    unmasked = unmask_asked(request.GET)
    if unmasked and not await user.ahas_perm(UNMASK_PERMISSION):
        return permission_refused(perm=UNMASK_PERMISSION)
    masking = await sync_to_async(masking_load)(unmasked=unmasked)

    async def chunks():
        before_id = None
        first = True
        rows = 0
        complete = False
        try:
            while True:
                records, before_id = await sync_to_async(_batch)(flt, before_id, masking)
                # Counted before the yield: a client that stops reading after the last batch
                # closes this generator at that yield, and the batch was sent.
                rows += len(records)
                if fmt == "csv":
                    yield _csv(records, header=first)
                elif records:
                    yield _ndjson(records)
                if before_id is None:
                    complete = True
                    return
                first = False
        finally:
            # Recorded once the stream ends, so the count is what was sent; a client that
            # goes away part-way leaves complete false.
            await sync_to_async(audit_record)(
                actor=user, action="streams.changerecord.export", request=request,
                details={"format": fmt, "filters": export_filters_audited(flt=flt), "rows": rows, "complete": complete,
                         "unmasked": unmasked})

    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(chunks(), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="shardwatch-{stamp}.{fmt}"'
    return response

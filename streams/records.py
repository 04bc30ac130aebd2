"""Reading change records back: pages of the feed, one record, one item's history. What each
is shown as is streams.rows's."""

from django.db.models import Q

from streams.feed import FeedFilter
from streams.models import ChangeRecord, digest_item_key
from streams.rows import FEED_FIELDS

PAGE_MAX = 500


def records_page(*, flt: FeedFilter, before_id: int | None = None, after_id: int | None = None, limit: int = 50):
    """Keyset pages in saved order: newest first, or with after_id the ones saved after it,
    oldest first (what a reconnecting page missed)."""
    limit = max(1, min(limit, PAGE_MAX))
    if flt.pattern:
        return _pattern_page(flt=flt, before_id=before_id, after_id=after_id, limit=limit)
    queryset = flt.apply(ChangeRecord.objects.select_related("source").only(*FEED_FIELDS, "source__table_name", "source__key_schema"))
    if after_id is not None:
        return list(queryset.filter(id__gt=after_id).order_by("id")[:limit])
    if before_id is not None:
        queryset = queryset.filter(id__lt=before_id)
    return list(queryset.order_by("-id")[:limit])


# An event pattern is tested in Python on each record's Lambda event; a page scans at most this
# many records for matches, so a pattern that matches nothing costs a bounded query.
PATTERN_SCAN_MAX = 5000
PATTERN_CHUNK = 500


def _pattern_page(*, flt: FeedFilter, before_id, after_id, limit) -> list[ChangeRecord]:
    queryset = flt.apply(ChangeRecord.objects.select_related("source", "shard__stream"))
    ascending = after_id is not None
    cursor = after_id if ascending else before_id
    found: list[ChangeRecord] = []
    scanned = 0
    while len(found) < limit and scanned < PATTERN_SCAN_MAX:
        page = queryset
        if cursor is not None:
            page = page.filter(id__gt=cursor) if ascending else page.filter(id__lt=cursor)
        chunk = list(page.order_by("id" if ascending else "-id")[:PATTERN_CHUNK])
        if not chunk:
            break
        scanned += len(chunk)
        cursor = chunk[-1].pk
        found.extend(record for record in chunk if flt.matches_record(record))
    return found[:limit]


def record_get(*, record_id: int) -> ChangeRecord:
    return ChangeRecord.objects.select_related("source", "shard__stream").get(pk=record_id)


def _item_changes(record: ChangeRecord):
    return ChangeRecord.objects.filter(
        source_id=record.source_id, item_hash=record.item_hash, item_key=record.item_key
    )


def record_neighbours(*, record: ChangeRecord) -> tuple[ChangeRecord | None, ChangeRecord | None]:
    """The change of the same item just before and just after this one."""
    earlier = Q(approximate_creation_time__lt=record.approximate_creation_time) | Q(
        approximate_creation_time=record.approximate_creation_time, sequence_key__lt=record.sequence_key
    )
    later = Q(approximate_creation_time__gt=record.approximate_creation_time) | Q(
        approximate_creation_time=record.approximate_creation_time, sequence_key__gt=record.sequence_key
    )
    changes = _item_changes(record).only("id", "event_name", "approximate_creation_time", "sequence_number")
    previous = changes.filter(earlier).order_by("-approximate_creation_time", "-sequence_key").first()
    following = changes.filter(later).order_by("approximate_creation_time", "sequence_key").first()
    return previous, following


def item_history(*, source_id: int, item_key: str, limit: int = PAGE_MAX) -> list[ChangeRecord]:
    """Every stored change of one item, oldest first."""
    return list(
        ChangeRecord.objects.filter(source_id=source_id, item_hash=digest_item_key(item_key), item_key=item_key)
        .select_related("source", "shard")
        .order_by("approximate_creation_time", "sequence_key")[:limit]
    )

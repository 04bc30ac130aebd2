"""Reading change records back: pages of the feed, one record, one item's history. What each
is shown as is streams.rows's.

Every reader here takes the viewer's Masking (masking_load) and returns records as that viewer
may see them: masked copies, never saved. The default, NO_MASKING, is for callers that show no
one item data (triggers, retention) and for viewers already cleared to see it unmasked."""

import json

from django.conf import settings
from django.db.models import Q

from streams import codec
from streams.feed import FeedFilter
from streams.masking import ANY_DEPTH, MODES, Masking, MaskingError, rule_path_parse
from streams.models import ChangeRecord, MaskingRule, StreamSource, digest_item_key
from streams.rows import FEED_FIELDS

PAGE_MAX = 500
NO_MASKING = Masking()


class RecordsPage(list):
    """The records of one page, in order, and `resume_id`. A scanned page (an event pattern, or
    filters tested again on masked records) looks at PATTERN_SCAN_MAX records at most; when it
    stops there before the page is full, resume_id is the last id it looked at, where the next
    page starts (before= going back, since= going forward), so a search goes on instead of
    ending quietly. None otherwise: the page is full, or nothing is left."""

    resume_id: int | None = None


def records_page(*, flt: FeedFilter, masking: Masking = NO_MASKING, before_id: int | None = None,
                 after_id: int | None = None, limit: int = 50) -> RecordsPage:
    """Keyset pages in saved order: newest first, or with after_id the ones saved after it,
    oldest first (what a reconnecting page missed). Records come back as `masking` shows them
    (streams.masking), and are matched as they are shown: under masking, the key, path and
    text filters are tested again on the masked record, so no filter finds a masked value."""
    limit = max(1, min(limit, PAGE_MAX))
    if flt.pattern or (flt.item_filtered and _masked_in_reach(flt=flt, masking=masking)):
        return _scanned_page(flt=flt, masking=masking, before_id=before_id, after_id=after_id, limit=limit)
    queryset = flt.apply(ChangeRecord.objects.select_related("source").only(*FEED_FIELDS, "source__table_name", "source__key_schema"))
    if after_id is not None:
        page = queryset.filter(id__gt=after_id).order_by("id")[:limit]
    else:
        if before_id is not None:
            queryset = queryset.filter(id__lt=before_id)
        page = queryset.order_by("-id")[:limit]
    return RecordsPage(masking.record_mask(record) for record in page)


# An event pattern, or a filter re-tested on masked records, is tested in Python on each record;
# a page scans at most this many records for matches, so a filter that matches nothing costs a
# bounded query.
PATTERN_SCAN_MAX = 5000
PATTERN_CHUNK = 500


def _masked_in_reach(*, flt: FeedFilter, masking: Masking) -> frozenset:
    # The sources with rules that the filter can match: a filter naming only sources without
    # rules is answered by the database alone, as if no source had any.
    return masking.sources & frozenset(flt.sources) if flt.sources else masking.sources


def records_filtered(*, flt: FeedFilter, masking: Masking, queryset):
    """`queryset` narrowed by flt as far as the stored values may answer it for a viewer who
    sees records as `masking` shows them: for sources with rules, the text, and the key where a
    rule masks the partition key, are left out, to be tested on the masked records
    (records_matching, which every record this gives must still pass)."""
    masked = _masked_in_reach(flt=flt, masking=masking)
    if not masked:
        return flt.apply(queryset)
    key_masked = masked
    if flt.key:
        schemas = StreamSource.objects.filter(pk__in=masked).values_list("pk", "key_schema")
        key_masked = frozenset(
            pk for pk, schema in schemas
            if not schema or masking.attribute_masked(source_id=pk, name=schema[0])
        )
    return flt.apply(queryset, masked_sources=masked, key_masked_sources=key_masked)


def records_matching(*, flt: FeedFilter, masking: Masking, records) -> list[ChangeRecord]:
    """Of saved records (each with source and shard.stream loaded, images included) that
    flt.apply already let through, those that match as `masking` shows them, masked."""
    found = []
    for record in records:
        shown = masking.record_mask(record)
        if shown is record:
            if flt.matches_record(record):
                found.append(record)
        elif flt.matches_shown(shown):
            found.append(shown)
    return found


def _scanned_page(*, flt: FeedFilter, masking: Masking, before_id, after_id, limit) -> RecordsPage:
    queryset = records_filtered(flt=flt, masking=masking, queryset=ChangeRecord.objects.select_related("source", "shard__stream"))
    ascending = after_id is not None
    cursor = after_id if ascending else before_id
    found: list[ChangeRecord] = []
    scanned = 0
    exhausted = False
    while len(found) < limit and scanned < PATTERN_SCAN_MAX:
        page = queryset
        if cursor is not None:
            page = page.filter(id__gt=cursor) if ascending else page.filter(id__lt=cursor)
        chunk = list(page.order_by("id" if ascending else "-id")[:PATTERN_CHUNK])
        scanned += len(chunk)
        if chunk:
            cursor = chunk[-1].pk
            found.extend(records_matching(flt=flt, masking=masking, records=chunk))
        if len(chunk) < PATTERN_CHUNK:
            exhausted = True
            break
    page = RecordsPage(found[:limit])
    if len(page) < limit and not exhausted:
        page.resume_id = cursor
    return page


def record_get(*, record_id: int, masking: Masking = NO_MASKING) -> ChangeRecord:
    """One record, as `masking` shows it. Raises ChangeRecord.DoesNotExist."""
    return masking.record_mask(ChangeRecord.objects.select_related("source", "shard__stream").get(pk=record_id))


def _item_changes(record: ChangeRecord):
    if getattr(record, "is_masked", False):
        # A masked copy's item_key is the masked one; item_hash is still the stored key's digest
        # (a SHA-1, so the key itself is not needed to tell items apart).
        return ChangeRecord.objects.filter(source_id=record.source_id, item_hash=record.item_hash)
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


def item_history(*, source_id: int, item_key: str, masking: Masking = NO_MASKING, limit: int = PAGE_MAX) -> list[ChangeRecord]:
    """Every stored change of one item, oldest first, as `masking` shows them.

    `item_key` is the item's key as stored (codec.item_key). Under masking that hides a key
    attribute, a lookup by that key finds nothing, as if no such item were stored: a viewer who
    could ask "is there an item with key X?" would learn masked values one guess at a time. Such
    a viewer opens an item's history from one of its records (item_history_of_record).

    A key that masking would change is answered before the database is asked: an answer that
    read the item's changes first would take longer for a stored key than for any other."""
    # A stored key never holds U+0000 (JSON writes it \u0000), and PostgreSQL cannot be asked
    # for one: a key given with it reads as JSON would write it.
    item_key = codec.nul_escape(text=item_key)
    if _key_masked(item_key=item_key, source_id=source_id, masking=masking):
        return []
    changes = list(
        ChangeRecord.objects.filter(source_id=source_id, item_hash=digest_item_key(item_key), item_key=item_key)
        .select_related("source", "shard")
        .order_by("approximate_creation_time", "sequence_key")[:limit]
    )
    shown = [masking.record_mask(change) for change in changes]
    if shown and shown[0].item_key != item_key:
        return []
    return shown


def _key_masked(*, item_key: str, source_id: int, masking: Masking) -> bool:
    if not masking.covers(source_id):
        return False
    try:
        keys = json.loads(item_key)
        return not isinstance(keys, dict) or codec.item_key(masking.image_mask(keys, source_id=source_id)) != item_key
    except (ValueError, TypeError, AttributeError):
        return False  # not a key as stored: the look-up finds nothing, and the check after it stays


def item_history_of_record(*, record_id: int, masking: Masking = NO_MASKING, limit: int = PAGE_MAX) -> list[ChangeRecord]:
    """Every stored change of the item that record `record_id` changed, oldest first, as
    `masking` shows them: how a viewer whose masking hides the key opens an item's history.
    Raises ChangeRecord.DoesNotExist."""
    record = ChangeRecord.objects.only("source_id", "item_key").get(pk=record_id)
    changes = item_history(source_id=record.source_id, item_key=record.item_key, limit=limit)
    return [masking.record_mask(change) for change in changes]


def masking_load(*, unmasked: bool = False, source_ids=None) -> Masking:
    """The masking rules in force now, as a Masking (streams.masking); Masking() when
    `unmasked` (the caller has checked the viewer may see data unmasked, and audited it).

    A rule whose path no longer reads (written to the table other than through the admin)
    masks the whole of its source's items instead: masking fails closed. `source_ids` limits
    it to those sources' rules (what a pushed batch of one source needs)."""
    if unmasked:
        return Masking()
    rules: dict[int, list] = {}
    found = MaskingRule.objects.all() if source_ids is None else MaskingRule.objects.filter(source_id__in=source_ids)
    for source_id, path, mode in found.values_list("source_id", "path", "mode"):
        try:
            segments, mode = rule_path_parse(path), mode if mode in MODES else "redact"
        except MaskingError:
            segments, mode = (ANY_DEPTH,), "redact"
        rules.setdefault(source_id, []).append((segments, mode))
    return Masking(rules_by_source={source_id: tuple(found) for source_id, found in rules.items()},
                   key=settings.SHARDWATCH_MASKING_KEY)

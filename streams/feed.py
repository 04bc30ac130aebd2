"""Which change records a person is looking at: the feed's filters, applied the same way to a
database query (pages, API, export) and to records pushed live to a browser."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from streams.codec import nul_escape
from streams.filters import MAX_PATTERN_LENGTH, InvalidPattern, compile_pattern
from streams.lambda_event import lambda_record
from streams.models import PARTITION_KEY_INDEXED, ChangeRecord

EVENT_NAMES = tuple(ChangeRecord.EventName.values)
KEY_MATCHES = ("equals", "prefix")
MAX_TEXT = 200


class FilterError(ValueError):
    """A filter parameter is not valid; the message names it and is meant for the user."""


@dataclass(frozen=True)
class FeedFilter:
    sources: tuple[int, ...] = ()
    events: tuple[str, ...] = ()
    key: str = ""
    key_match: str = "equals"
    path: str = ""
    text: str = ""
    start: datetime | None = None
    end: datetime | None = None
    # A Lambda/EventBridge event pattern (JSON), matched against each record's Lambda event:
    # the same test a trigger's FilterCriteria applies, so a filter can be tried here first.
    pattern: str = ""
    # Derived once: the partition_key column holds at most PARTITION_KEY_INDEXED characters.
    _key_column_value: str = field(default="", init=False, repr=False, compare=False)
    _compiled: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_key_column_value", self.key[:PARTITION_KEY_INDEXED])
        if self.pattern:
            try:
                object.__setattr__(self, "_compiled", compile_pattern(self.pattern))
            except InvalidPattern as exc:
                raise FilterError(f"pattern is not a valid event pattern: {exc}") from None

    @classmethod
    def from_params(cls, params: Mapping) -> "FeedFilter":
        """From query parameters: source (repeatable), event (repeatable), key, key_match
        (equals|prefix), path, q, from, to (ISO 8601)."""
        getlist = params.getlist if hasattr(params, "getlist") else (lambda name: _as_list(params.get(name)))
        try:
            sources = tuple(sorted({int(value) for value in getlist("source") if str(value).strip()}))
        except ValueError:
            raise FilterError("source must be a source id (a whole number).") from None
        events = tuple(value.upper() for value in getlist("event") if value.strip())
        unknown = sorted(set(events) - set(EVENT_NAMES))
        if unknown:
            raise FilterError(f"event must be INSERT, MODIFY or REMOVE, not {', '.join(unknown)}.")
        key_match = (params.get("key_match") or "equals").strip()
        if key_match not in KEY_MATCHES:
            raise FilterError("key_match must be equals or prefix.")
        text = (params.get("q") or "").strip()
        if len(text) > MAX_TEXT:
            raise FilterError(f"q is limited to {MAX_TEXT} characters.")
        start, end = _parse_time(params.get("from"), "from"), _parse_time(params.get("to"), "to")
        if start and end and start > end:
            raise FilterError("from must be before to.")
        pattern = (params.get("pattern") or "").strip()
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise FilterError(f"pattern is limited to {MAX_PATTERN_LENGTH} characters, as in Lambda.")
        # A U+0000 typed into key, path or q (%00 in a URL) reads as the stand-in those columns
        # and the images' JSON text hold it as (codec.NUL_STAND_IN): so it finds those records,
        # and PostgreSQL, which cannot take U+0000 in a query's text, is never given it.
        return cls(
            pattern=pattern,
            sources=sources,
            events=tuple(sorted(set(events))),
            key=nul_escape(text=(params.get("key") or "").strip()),
            key_match=key_match,
            path=nul_escape(text=(params.get("path") or "").strip()),
            text=nul_escape(text=text),
            start=start,
            end=end,
        )

    def to_params(self) -> list[tuple[str, str]]:
        """The query parameters that give this filter back, for permalinks."""
        params = [("source", str(source)) for source in self.sources]
        params += [("event", event) for event in self.events]
        if self.key:
            params += [("key", self.key), ("key_match", self.key_match)]
        if self.path:
            params.append(("path", self.path))
        if self.text:
            params.append(("q", self.text))
        if self.start:
            params.append(("from", self.start.isoformat()))
        if self.end:
            params.append(("to", self.end.isoformat()))
        if self.pattern:
            params.append(("pattern", self.pattern))
        return params

    def querystring(self) -> str:
        return urlencode(self.to_params())

    def as_json(self) -> dict:
        return {
            "source": list(self.sources),
            "event": list(self.events),
            "key": self.key,
            "key_match": self.key_match,
            "path": self.path,
            "q": self.text,
            "from": self.start.isoformat() if self.start else "",
            "to": self.end.isoformat() if self.end else "",
            "pattern": self.pattern,
        }

    @property
    def is_empty(self) -> bool:
        return not self.to_params()

    @property
    def needs_database(self) -> bool:
        """Free text and patterns look at whole images, which live rows do not carry."""
        return bool(self.text or self.pattern)

    @property
    def item_filtered(self) -> bool:
        """Whether the filter looks at item data (key, path, text, pattern): what masking must
        test again on the masked record."""
        return bool(self.key or self.path or self.text or self.pattern)

    def matches_shown(self, record) -> bool:
        """Every item-data test (key, path, text, pattern) against a record as a viewer is
        shown it (a masked copy: streams.masking.Masking.record_mask), not as stored; the
        database's tests (q, apply) ran on the stored values, so a record passes only when
        both the stored and the shown values match. Needs keys and images loaded, and
        record.source and record.shard.stream for the pattern."""
        if self.key and not self._key_matches(record.partition_key):
            return False
        if self.path and not _paths_match(self.path, [change["path"] for change in record.diff]):
            return False
        if self.text:
            needle = self.text.lower()
            texts = (record.keys, record.new_image, record.old_image)
            if not any(value is not None and _text_found(needle, value) for value in texts):
                return False
        return self.matches_record(record)

    def matches_record(self, record) -> bool:
        """The event pattern against a saved record's Lambda event (needs record.source and
        record.shard.stream). Always true without a pattern."""
        if self._compiled is None:
            return True
        return self._compiled.matches(lambda_record(record))

    def q(self, *, masked_sources: frozenset = frozenset(), key_masked_sources: frozenset | None = None) -> Q:
        """The filter as a database condition on the stored values. For `key_masked_sources`
        (those whose partition key the viewer sees masked; `masked_sources` when not given) the
        key is left to matches_shown, which tests the masked value: a viewer shown a hash finds
        the records that hash stands for, and never finds a record by the value the hash hides.
        Where masking leaves the key as stored, the database tests it, so a key search there is
        not bounded by a scan (streams.records.records_filtered)."""
        if key_masked_sources is None:
            key_masked_sources = masked_sources
        condition = Q()
        if self.sources:
            condition &= Q(source_id__in=self.sources)
        if self.events:
            condition &= Q(event_name__in=self.events)
        if self.key:
            lookup = "partition_key" if self.key_match == "equals" else "partition_key__startswith"
            condition &= _unless_masked(Q(**{lookup: self._key_column_value}), key_masked_sources)
        if self.path:
            # Masking only takes paths away or folds them into their map's, which a path filter
            # of the map matches too: the stored paths find everything the masked ones could.
            condition &= (
                Q(changed_paths__contains=f"\n{self.path}\n")
                | Q(changed_paths__contains=f"\n{self.path}.")
                | Q(changed_paths__contains=f"\n{self.path}[")
            )
        if self.start:
            condition &= Q(approximate_creation_time__gte=self.start)
        if self.end:
            condition &= Q(approximate_creation_time__lte=self.end)
        return condition

    def apply(self, queryset, *, masked_sources: frozenset = frozenset(), key_masked_sources: frozenset | None = None):
        """`queryset` narrowed by q() and the text filter, on the stored values; for
        `masked_sources` the text test, and for `key_masked_sources` the key test, are left to
        matches_shown (see q)."""
        queryset = queryset.filter(self.q(masked_sources=masked_sources, key_masked_sources=key_masked_sources))
        if self.text:
            queryset = queryset.annotate(
                _keys_text=Cast("keys", TextField()),
                _new_text=Cast("new_image", TextField()),
                _old_text=Cast("old_image", TextField()),
            ).filter(_unless_masked(
                Q(_keys_text__icontains=self.text)
                | Q(_new_text__icontains=self.text)
                | Q(_old_text__icontains=self.text),
                masked_sources,
            ))
        return queryset

    def _key_matches(self, partition_key: str) -> bool:
        if self.key_match == "equals":
            return partition_key == self._key_column_value
        return partition_key.startswith(self._key_column_value)

    def matches_row(self, row: dict) -> bool:
        """The same test as q() for a pushed feed row; free text is left to the database."""
        if self.sources and row["source_id"] not in self.sources:
            return False
        if self.events and row["event_name"] not in self.events:
            return False
        if self.key and not self._key_matches(row["partition_key"]):
            return False
        if self.path and not _paths_match(self.path, row["paths"]):
            return False
        if self.start or self.end:
            created = parse_datetime(row["approximate_creation_time"])
            if (self.start and created < self.start) or (self.end and created > self.end):
                return False
        return True


def _unless_masked(condition: Q, masked_sources: frozenset) -> Q:
    return Q(source_id__in=sorted(masked_sources)) | condition if masked_sources else condition


def _paths_match(wanted: str, paths) -> bool:
    prefixes = (wanted + ".", wanted + "[")
    return any(path == wanted or path.startswith(prefixes) for path in paths)


def _text_found(needle: str, value) -> bool:
    # The text q() searches is the stored JSON: ingest writes non-ASCII characters as they are,
    # StoredJSONField's own saves as \u escapes. Either spelling found counts.
    return needle in json.dumps(value, ensure_ascii=False).lower() or needle in json.dumps(value).lower()


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse_time(value, name):
    if not value:
        return None
    parsed = parse_datetime(value.strip().replace(" ", "T", 1) if "T" not in value else value.strip())
    if parsed is None:
        raise FilterError(f"{name} must be a date and time such as 2026-01-31T13:45 (UTC unless it says otherwise).")
    return make_aware(parsed) if is_naive(parsed) else parsed

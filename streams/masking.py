"""Masking item data for people who may not see it: the one home of masking rules' paths, their
matching, and what a masked value looks like.

A rule names an attribute path and a mode. Paths are written as the diff spells them
(streams.diff): names joined with dots, list elements as [N], a name that is not a plain
identifier JSON-quoted in brackets (["ship to"]); and two wildcards, each a whole segment:
`*` for any one level (a map key or a list element) and `**` for any number of levels,
none included (`**.ssn` masks `ssn` at the top and at any depth). Keys are attributes of the
item like any other, so a rule on the partition key's name masks it in Keys, in both images,
in the key shown and in the item's history link.

What a masked value looks like (codec.MASK_REDACTED, codec.MASK_HASH_PREFIX), its type tag kept:
  redact  {"S": "•••"}, {"N": "•••"}, {"M": "•••"}: nothing of the value is left;
  hash    {"S": "hmac:3f9a1c2b7e4d5a60"}: HMAC-SHA256 (SHARDWATCH_MASKING_KEY) of the value's
          canonical typed JSON, cut to 64 bits. Equal values give equal hashes, so a change and
          equality across records still show; numbers hash by value (N "1.0" as N "1").
  remove  the attribute is not there at all, nor its changes in a diff.
Where several rules reach one value, the strongest wins: remove, then redact, then hash. A rule
that reaches a value inside a map or list masks that part only.

Diffs carry only the changed leaves, not the maps around them. A change below a masked map
(`address.city` under a rule on `address`) is therefore shown as one change of `address`, with
••• for both values whatever the mode: the hash of the whole map cannot be worked out from a
diff. The images show its hash.

Invariants: masking never changes what is stored, only what is shown (callers mask copies);
triggers get real data and never pass through here; and whatever a person may filter on (the
key, paths, text, event patterns) is tested against the masked record, so no filter finds a
masked value (kafka-ui#4115 is that hole). No database access here.
"""

import copy
import hmac
import json
import re
from dataclasses import dataclass, field

from streams import codec
from streams.diff import path_child

__all__ = [
    "ANY_DEPTH",
    "ANY_ONE",
    "CHANGES_REMOVED",
    "MODES",
    "Masking",
    "MaskingError",
    "UNMASK_PERMISSION",
    "WITHHELD",
    "Wildcard",
    "path_text",
    "rule_path_parse",
]

# Who may ask to see item data unmasked (held by the Admin role, dashboard/roles.py).
UNMASK_PERMISSION = "streams.view_unmasked_changerecord"
REDACT, HASH, REMOVE = "redact", "hash", "remove"
MODES = (REDACT, HASH, REMOVE)
# Strongest first: where rules disagree about one value, the one that shows least wins.
_STRENGTH = {REMOVE: 3, REDACT: 2, HASH: 1}


class Wildcard(str):
    """A `*` or `**` segment of a rule; a name spelt ["*"] is a plain str and matches itself."""


ANY_ONE, ANY_DEPTH = Wildcard("*"), Wildcard("**")
MAX_PATH_LENGTH = 512
# Text a handler or the stream wrote about a record (a decode error, a shape error) may quote
# its values; under masking it is replaced by this.
WITHHELD = "(withheld: this source has masking rules, and the text may quote item data)"


class MaskingError(ValueError):
    """A rule's path cannot be read; the message says why, for the admin form."""


_BARE = re.compile(r"[^.\[\]\s]+")


def rule_path_parse(text: str, *, wildcards: bool = True) -> tuple:
    """The segments of an attribute path: a tuple of str (a map key), Wildcard (ANY_ONE or
    ANY_DEPTH, only when `wildcards`) and int (a list index). Accepts every path streams.diff writes
    (`items[0].sku`, `order["ship to"]`, `["a.b"]`), and in rules bare names that are not
    identifiers too (`user-id.e-mail`). A literal "*" name is written ["*"].

    Raises MaskingError for an empty path, an empty segment, an unclosed bracket, or a segment
    that mixes a wildcard with other characters (`card*`)."""
    text = text.strip()
    if not text:
        raise MaskingError("The path is empty.")
    if len(text) > MAX_PATH_LENGTH:
        raise MaskingError(f"The path is over {MAX_PATH_LENGTH} characters.")
    segments: list = []
    position = 0
    expect_name = True  # at the start, or just after a dot
    while position < len(text):
        char = text[position]
        if char == "[":
            end, segment = _bracket(text, position)
            segments.append(segment)
            position = end
            expect_name = False
        elif char == ".":
            if expect_name:
                raise MaskingError(f"Empty name at character {position + 1} of {text!r}.")
            position += 1
            expect_name = True
            if position == len(text):
                raise MaskingError(f"{text!r} ends with a dot.")
        else:
            if not expect_name:
                raise MaskingError(f"Expected . or [ at character {position + 1} of {text!r}.")
            match = _BARE.match(text, position)
            if match is None:
                raise MaskingError(f"Unexpected {char!r} at character {position + 1} of {text!r}.")
            name = match.group()
            if "*" in name and name not in (ANY_ONE, ANY_DEPTH):
                raise MaskingError(f"{name!r}: * and ** stand alone as a segment; write a name holding * as [\"{name}\"].")
            if name in (ANY_ONE, ANY_DEPTH):
                if not wildcards:
                    raise MaskingError(f"{name!r} is not a name here.")
                segments.append(ANY_ONE if name == ANY_ONE else ANY_DEPTH)
            else:
                segments.append(name)
            position = match.end()
            expect_name = False
    return tuple(segments)


def _bracket(text: str, start: int) -> tuple[int, object]:
    end = text.find("]", start)
    if text.startswith('["', start):
        # A JSON string may hold "]"; read it with the JSON decoder.
        try:
            name, after = json.JSONDecoder().raw_decode(text, start + 1)
        except ValueError:
            raise MaskingError(f"Bad quoted name at character {start + 1} of {text!r}.") from None
        if not isinstance(name, str) or text[after:after + 1] != "]":
            raise MaskingError(f"Unclosed [ at character {start + 1} of {text!r}.")
        return after + 1, name
    if end == -1:
        raise MaskingError(f"Unclosed [ at character {start + 1} of {text!r}.")
    inner = text[start + 1:end]
    if inner in (ANY_ONE, ANY_DEPTH):
        # Suggesting ["*"] here would lead to a rule on a name "*", which masks no list element.
        raise MaskingError(f"[{inner}]: write a wildcard as a segment of its own, .{inner} (items.{inner} for "
                           f"every element of items); [\"{inner}\"] names an attribute called {inner}.")
    if not inner.isdigit():
        raise MaskingError(f"[{inner}] must be a list index (a whole number) or a quoted name such as [\"{inner}\"].")
    return end + 1, int(inner)


def path_text(segments) -> str:
    """Segments (rule_path_parse's) written back as the diff writes paths."""
    text = ""
    for segment in segments:
        text = f"{text}[{segment}]" if isinstance(segment, int) else path_child(text, segment)
    return text


# --- matching -------------------------------------------------------------------------------
#
# Each rule is matched as a small automaton over path segments: a state is the set of positions
# in the rule's segments still reachable. Stepping into a map key or list index moves every
# position past a segment it matches; "**" keeps its position (it may take more levels) and is
# also skipped for free (it may take none). A rule matches a value when its end is reachable,
# and can still match below it while any position is left.


@dataclass(frozen=True, eq=False)
class _Rule:
    segments: tuple
    mode: str

    def closure(self, positions: frozenset) -> frozenset:
        out = set(positions)
        stack = list(positions)
        while stack:
            position = stack.pop()
            if position < len(self.segments) and self.segments[position] is ANY_DEPTH and position + 1 not in out:
                out.add(position + 1)
                stack.append(position + 1)
        return frozenset(out)

    def step(self, positions: frozenset, segment) -> frozenset:
        moved = set()
        for position in positions:
            if position >= len(self.segments):
                continue
            want = self.segments[position]
            if want is ANY_DEPTH:
                moved.add(position)
            elif want is ANY_ONE or (want == segment and type(want) is type(segment)):
                moved.add(position + 1)
        return self.closure(frozenset(moved)) if moved else frozenset()


# Per rule, its positions; rules with no position left are dropped.
_States = tuple  # tuple[tuple[_Rule, frozenset], ...]


def _step(states: _States, segment) -> tuple[str | None, _States]:
    """(the strongest mode of a rule that matches here or None, the states below here)."""
    verdict = None
    below = []
    for rule, positions in states:
        moved = rule.step(positions, segment)
        if not moved:
            continue
        if len(rule.segments) in moved and (verdict is None or _STRENGTH[rule.mode] > _STRENGTH[verdict]):
            verdict = rule.mode
        if any(position < len(rule.segments) for position in moved):
            below.append((rule, moved))
    return verdict, tuple(below)


_TRANSITIONS_KEPT = 10_000


# Tags whose inner holds no typed values: nothing below them for a rule to reach.
_SET_TAGS = frozenset({"SS", "NS", "BS"})
_LEAF_TAGS = frozenset({"S", "N", "B", "NULL", "BOOL"}) | _SET_TAGS


# --- masked values --------------------------------------------------------------------------


def _tag(value) -> str:
    try:
        return codec.typed_entry(value)[0]
    except codec.WireFormatError:
        return "?"


def _canonical(value):
    """A typed value with numbers as DynamoDB spells them and sets sorted: what hashing sees,
    so that equal values hash equally however the stream spelt them."""
    try:
        tag, inner = codec.typed_entry(value)
    except codec.WireFormatError:
        return value
    try:
        if tag == "N":
            return {"N": codec.number_canonical(inner)}
        if tag == "NS":
            return {"NS": sorted({codec.number_canonical(member) for member in inner}, key=float)}
        if tag in ("SS", "BS"):
            return {tag: sorted(set(inner))}
        if tag == "M" and isinstance(inner, dict):
            return {"M": {name: _canonical(member) for name, member in inner.items()}}
        if tag == "L" and isinstance(inner, list):
            return {"L": [_canonical(member) for member in inner]}
    except (ValueError, TypeError, ArithmeticError):
        return value  # as received: a record that failed to decode still hashes stably
    return value


_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True)
class Masking:
    """The masking rules in force for one viewer: {source id: rules}. Masking() masks nothing
    (a user shown data unmasked, or no rules anywhere). Build it with streams.records.masking_load.

    Every method returns new objects and leaves what it was given as it was."""

    rules_by_source: dict = field(default_factory=dict)  # {source_id: ((path segments, mode), ...)}
    key: bytes = b""
    _compiled: dict = field(default=None, init=False, repr=False, compare=False)
    _transitions: dict = field(default=None, init=False, repr=False, compare=False)
    _state_ids: dict = field(default=None, init=False, repr=False, compare=False)
    _states: list = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        # Walks carry a state as a small int (0: no rule can match here or below), and
        # (state, segment) -> (mode, next state) is remembered: items of one table share their
        # attribute names, so a masked page or batch takes the same few steps over and over.
        object.__setattr__(self, "_transitions", {})
        object.__setattr__(self, "_state_ids", {(): 0})
        object.__setattr__(self, "_states", [()])
        compiled = {
            source_id: tuple(_Rule(tuple(segments), mode) for segments, mode in rules)
            for source_id, rules in self.rules_by_source.items() if rules
        }
        object.__setattr__(self, "_compiled", compiled)

    @property
    def active(self) -> bool:
        """Whether any source has a rule: without one nothing is masked, and filters need not
        look at masked records."""
        return bool(self._compiled)

    @property
    def sources(self) -> frozenset:
        """The ids of the sources with rules: those whose items this viewer sees masked."""
        return frozenset(self._compiled)

    def covers(self, source_id: int) -> bool:
        return source_id in self._compiled

    def attribute_masked(self, *, source_id: int, name: str) -> bool:
        """Whether a rule of `source_id` reaches the top-level attribute `name` itself (redacts,
        hashes or removes it whole). For a key attribute, a scalar, no other rule can change it:
        one that does not reach it leaves the key shown as stored."""
        if not self.covers(source_id):
            return False
        verdict, _below = self._next(self._start(source_id), name)
        return verdict is not None

    def _state_id(self, states: _States) -> int:
        found = self._state_ids.get(states)
        if found is None:
            found = self._state_ids[states] = len(self._states)
            self._states.append(states)
        return found

    def _next(self, state: int, segment) -> tuple[str | None, int]:
        key = (state, type(segment) is int, segment)
        found = self._transitions.get(key)
        if found is None:
            if len(self._transitions) > _TRANSITIONS_KEPT:
                self._transitions.clear()
            verdict, below = _step(self._states[state], segment)
            found = self._transitions[key] = (verdict, self._state_id(below))
        return found

    def _start(self, source_id) -> int:
        key = ("start", source_id)
        found = self._transitions.get(key)
        if found is None:
            rules = self._compiled.get(source_id, ())
            found = self._transitions[key] = self._state_id(tuple((rule, rule.closure(frozenset({0}))) for rule in rules))
        return found

    def value_hash(self, value) -> dict:
        """{tag: "hmac:<16 hex>"}: the hash mode's stand-in for a typed value."""
        digest = hmac.digest(self.key, _canonical_json(_canonical(value)).encode(), "sha256").hex()
        return {_tag(value): codec.MASK_HASH_PREFIX + digest[:16]}

    def _apply(self, mode: str, value) -> dict:
        if mode == HASH:
            return self.value_hash(value)
        return {_tag(value): codec.MASK_REDACTED}

    # Images: an attribute map, masked from the top.

    def image_mask(self, image, *, source_id: int):
        """An image or Keys map (attribute name -> typed value) with `source_id`'s rules
        applied; None stays None, and anything not a map (what a broken stream sent) is
        codec.MASK_REDACTED under masking."""
        if image is None or not self.covers(source_id):
            return image
        if not isinstance(image, dict):
            # Kept as a stream sent it (streams.ingest): a rule cannot say what in it to mask.
            return codec.MASK_REDACTED
        return self._map(image, self._start(source_id))

    def _map(self, attributes: dict, states: int) -> dict:
        out = {}
        for name, value in attributes.items():
            verdict, below = self._next(states, name)
            if verdict == REMOVE:
                continue
            if verdict:
                out[name] = self._apply(verdict, value)
            elif below:
                out[name] = self._value(value, below)
            else:
                out[name] = value
        return out

    def _value(self, value, states: int):
        """Rules that may match below `value` (a typed value) applied inside it. A value in no
        typed form masking can read into (ingest keeps what a stream sent that way: an untyped
        map, an unknown tag) is redacted whole: a rule might have reached into it."""
        if value is None or value == {}:
            # A diff's missing side (an added or removed attribute), or an empty map as
            # DynamoDB Local sends it (codec.typed_entry): nothing to mask.
            return value
        if not isinstance(value, dict) or len(value) != 1:
            return {"?": codec.MASK_REDACTED}
        ((tag, inner),) = value.items()
        if tag in _LEAF_TAGS and not isinstance(inner, dict) and not (isinstance(inner, list) and tag not in _SET_TAGS):
            return value
        if tag == "M" and isinstance(inner, dict):
            return {"M": self._map(inner, states)}
        if tag == "L" and isinstance(inner, list):
            out = []
            for index, element in enumerate(inner):
                verdict, below = self._next(states, index)
                if verdict == REMOVE:
                    continue
                out.append(self._apply(verdict, element) if verdict else self._value(element, below) if below else element)
            return {"L": out}
        return {tag if isinstance(tag, str) else "?": codec.MASK_REDACTED}

    # Diffs: each change's path is stepped through from the top.

    def diff_mask(self, changes: list[dict], *, source_id: int) -> list[dict]:
        """A diff (streams.diff's changes) as a masked viewer sees it: changes of removed
        attributes dropped, values of masked ones replaced, and changes below a masked map or
        list folded into one change of it (see the module docstring)."""
        if not changes or not self.covers(source_id):
            return changes
        start = self._start(source_id)
        out: list[dict] = []
        folded: set[str] = set()
        for change in changes:
            try:
                segments = rule_path_parse(change["path"], wildcards=False)
            except MaskingError:
                out.append(self._change_whole(change, REDACT))  # a path we cannot read is not shown
                continue
            states = start
            for depth, segment in enumerate(segments):
                verdict, states = self._next(states, segment)
                last = depth == len(segments) - 1
                if verdict == REMOVE:
                    break
                if verdict and not last:
                    path = path_text(segments[:depth + 1])
                    if path not in folded:
                        folded.add(path)
                        tag = "L" if isinstance(segments[depth + 1], int) else "M"
                        out.append({"path": path, "kind": "changed", "old": {tag: codec.MASK_REDACTED},
                                    "new": {tag: codec.MASK_REDACTED}})
                    break
                if last:
                    if verdict:
                        out.append(self._change_whole(change, verdict))
                    elif states:
                        out.append({**change, "old": self._value(change["old"], states),
                                    "new": self._value(change["new"], states)})
                    else:
                        out.append(change)
                    break
                if not states:
                    out.append(change)  # no rule reaches this deep
                    break
        return out

    def _change_whole(self, change: dict, mode: str) -> dict:
        masked = {**change}
        for side in ("old", "new"):
            if change.get(side) is not None:
                masked[side] = self._apply(mode, change[side])
        if "added" in change:
            tag = _tag(change.get("new") or change.get("old"))
            member_tag = tag[:1]  # SS -> S, NS -> N, BS -> B
            for side in ("added", "removed"):
                members = change[side]
                if mode == HASH:
                    masked[side] = [self.value_hash({member_tag: member})[member_tag] for member in members]
                else:
                    masked[side] = [codec.MASK_REDACTED] if members else []
        return masked

    # Whole records and rows.

    def row_mask(self, row: dict, *, source) -> dict:
        """An ingest row or streams.rows.record_as_row dict as a masked viewer sees it: keys,
        images (those present), diff, item_key, partition_key and changed_paths worked out
        again from the masked values; decode and shape errors withheld. `source` gives the
        id and key schema. A source without rules gives `row` itself."""
        if not self.covers(source.pk):
            return row
        masked = dict(row)
        stored_keys = row.get("keys") or {}
        keys = self.image_mask(stored_keys, source_id=source.pk)
        if not isinstance(keys, dict):
            keys = {}
        elif isinstance(stored_keys, dict) and len(keys) < len(stored_keys):
            # A record without its key names no item: a key attribute that a rule removes is
            # redacted in Keys instead (it is still left out of the images).
            keys = {name: keys.get(name) or {_tag(value): codec.MASK_REDACTED} for name, value in stored_keys.items()}
        masked["keys"] = keys
        for image in ("old_image", "new_image"):
            if image in row:
                masked[image] = self.image_mask(row[image], source_id=source.pk)
        if row.get("images_as_sent"):
            masked["images_as_sent"] = {
                name: self.image_mask(image, source_id=source.pk) for name, image in row["images_as_sent"].items()
            }
        masked["diff"] = self.diff_mask(row.get("diff") or [], source_id=source.pk)
        # A change whose every path a rule removes would read as a change of nothing.
        masked["changes_removed"] = bool(row.get("diff")) and not masked["diff"]
        if "changed_paths" in row:
            masked["changed_paths"] = (
                "\n" + "\n".join(change["path"] for change in masked["diff"]) + "\n" if masked["diff"] else ""
            )
        try:
            masked["item_key"] = codec.item_key(keys)
        except (ValueError, TypeError, AttributeError):
            masked["item_key"] = _canonical_json(keys)
        hash_value = keys.get(source.key_schema[0]) if source.key_schema else None
        try:
            masked["partition_key"] = "" if hash_value is None else str(codec.to_display(hash_value))[:512]
        except codec.WireFormatError:
            masked["partition_key"] = ""
        for text in ("decode_error", "shape_error"):
            if row.get(text):
                masked[text] = WITHHELD
        return masked

    def record_mask(self, record):
        """A copy of a ChangeRecord (never saved) holding what row_mask gives; the record
        itself when its source has no rules. Needs record.source."""
        if not self.covers(record.source_id):
            return record
        masked = copy.copy(record)
        values = {name: getattr(record, name) for name in _RECORD_FIELDS if name in record.__dict__}
        for name, value in self.row_mask(values, source=record.source).items():
            setattr(masked, name, value)
        # A field the query deferred would load from the database, unmasked, when first read
        # from the copy: it is set to None instead, so a caller that forgot to load it shows
        # nothing rather than the stored value.
        for name in _RECORD_FIELDS:
            if name not in record.__dict__:
                setattr(masked, name, None)
        masked.is_masked = True
        return masked

    def text_shown(self, text: str, *, source_id: int | None) -> str:
        """Free text about a source's records (a handler's error message or response, a dead
        letter's reason) as this viewer may see it: as it is, or WITHHELD where the source has
        rules, since it may quote the values they mask. "" stays "" (there is nothing to hide)."""
        return WITHHELD if text and self.covers(source_id) else text


# The record fields row_mask works on; deferred fields (not loaded) are left alone.
_RECORD_FIELDS = (
    "keys", "old_image", "new_image", "images_as_sent", "diff", "changed_paths", "item_key", "partition_key",
    "decode_error", "shape_error",
)
# What a summary says of a change that touched only attributes a rule removes.
CHANGES_REMOVED = "(only attributes that masking removes changed)"

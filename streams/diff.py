"""What a stream record changed, worked out from its old and new images in wire format.

Images stay typed DynamoDB JSON throughout: nothing is decoded except numbers that differ
textually, which are compared as Decimal. No Django here; this runs once per ingested record.

A change is a dict:

    {"path": "address.city", "kind": "changed", "old": {"S": "Paris"}, "new": {"S": "Lyon"}}

kind is "added", "removed", "changed" or "type_changed"; old/new are typed values (None on the
side that has nothing). Set changes also carry "added" and "removed" member lists.

Paths: map keys join with dots (address.city), list elements take an index (items[0].sku), and a
name that is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*) is JSON-quoted in brackets
(["weird.name"], order["ship to"]), so "a.b" the attribute and a.b the nested key never collide.

Order: a depth-first walk, map keys in code-point order and list elements by index. It does not
depend on the order DynamoDB happened to send attributes in, so the same change always reads
the same way.
"""

import json
from decimal import Decimal

from streams.codec import is_mask, to_display, typed_entry

__all__ = ["diff_images", "path_child", "record_diff", "summarize"]

VIEW_TYPES = frozenset({"KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"})
EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})

# Which images each view type puts in a record, whatever the event.
_CARRIES_OLD = frozenset({"OLD_IMAGE", "NEW_AND_OLD_IMAGES"})
_CARRIES_NEW = frozenset({"NEW_IMAGE", "NEW_AND_OLD_IMAGES"})

_SET_TAGS = frozenset({"SS", "NS", "BS"})
_MISSING = object()
_SUMMARY_WIDTH = 40
# Built once: json.dumps() with options builds a new encoder on every call.
_quote = json.JSONEncoder(ensure_ascii=False).encode
_compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def path_child(prefix: str, name: str) -> str:
    """The path of map key `name` under `prefix` ("" at the top), spelt as the module docstring says."""
    if name.isascii() and name.isidentifier():
        return f"{prefix}.{name}" if prefix else name
    return f"{prefix}[{_quote(name)}]"


_child = path_child


def _diff_maps(old, new, prefix, out):
    # Plain dict inequality (in C) skips every untouched attribute; only the rest are walked.
    get = new.get
    names = [name for name, value in old.items() if get(name, _MISSING) != value]
    # Attributes only in new exist exactly when new is bigger than the names the two share,
    # which spares a second pass over new in the common case.
    shared = len(old) - len([name for name in names if name not in new]) if names else len(old)
    if len(new) > shared:
        names.extend([name for name in new if name not in old])
    if len(names) > 1:
        names.sort()
    for name in names:
        path = _child(prefix, name)
        old_value = old.get(name)
        new_value = get(name)
        if new_value is None:
            out.append({"path": path, "kind": "removed", "old": old_value, "new": None})
        elif old_value is None:
            out.append({"path": path, "kind": "added", "old": None, "new": new_value})
        else:
            _diff_values(old_value, new_value, path, out)


def _diff_lists(old, new, prefix, out):
    common = min(len(old), len(new))
    for index in range(common):
        if old[index] != new[index]:
            _diff_values(old[index], new[index], f"{prefix}[{index}]", out)
    for index in range(common, len(old)):
        out.append({"path": f"{prefix}[{index}]", "kind": "removed", "old": old[index], "new": None})
    for index in range(common, len(new)):
        out.append({"path": f"{prefix}[{index}]", "kind": "added", "old": None, "new": new[index]})


def _set_change(tag, old_members, new_members):
    if tag == "NS":
        # "1.0" and "1" are the same member; keep each side's own spelling in the output.
        old_by_value = {Decimal(member): member for member in old_members}
        new_by_value = {Decimal(member): member for member in new_members}
        added = [new_by_value[number] for number in sorted(new_by_value.keys() - old_by_value.keys())]
        removed = [old_by_value[number] for number in sorted(old_by_value.keys() - new_by_value.keys())]
        return added, removed
    old_set, new_set = set(old_members), set(new_members)
    return sorted(new_set - old_set), sorted(old_set - new_set)


def _diff_values(old, new, path, out):
    """Called only for values that are not ==, which is rarely a false alarm: numbers spelt
    differently, set members in another order, or DynamoDB Local's {} for an empty map."""
    try:
        ((old_tag, old_inner),) = old.items()
        ((new_tag, new_inner),) = new.items()
    except ValueError:
        old_tag, old_inner = typed_entry(old)
        new_tag, new_inner = typed_entry(new)
    if old_tag != new_tag:
        out.append({"path": path, "kind": "type_changed", "old": old, "new": new})
    elif old_tag == "M":
        _diff_maps(old_inner, new_inner, path, out)
    elif old_tag == "L":
        _diff_lists(old_inner, new_inner, path, out)
    elif old_tag == "N":
        if Decimal(old_inner) != Decimal(new_inner):
            out.append({"path": path, "kind": "changed", "old": old, "new": new})
    elif old_tag in _SET_TAGS:
        added, removed = _set_change(old_tag, old_inner, new_inner)
        if added or removed:
            out.append(
                {"path": path, "kind": "changed", "old": old, "new": new, "added": added, "removed": removed}
            )
    else:
        out.append({"path": path, "kind": "changed", "old": old, "new": new})


def diff_images(*, old: dict | None, new: dict | None) -> list[dict]:
    """Changes from one image (attribute name -> typed value) to another.

    A missing image counts as an empty item, so diff_images(old=None, new=image) lists every
    attribute as added. Numbers compare by value (N "1.0" equals N "1"); N "1" against S "1" is
    a type_changed. Lists compare index by index. See the module docstring for paths and order.
    """
    changes = []
    _diff_maps(old or {}, new or {}, "", changes)
    return changes


def _all_added(image):
    return [{"path": _child("", name), "kind": "added", "old": None, "new": image[name]} for name in sorted(image)]


def _all_removed(image):
    return [{"path": _child("", name), "kind": "removed", "old": image[name], "new": None} for name in sorted(image)]


def record_diff(*, event_name: str, view_type: str, old_image, new_image) -> tuple[list[dict], bool]:
    """(changes, complete) for one stream record. complete is False when the view type hides
    something, and then the changes hold only what the record itself proves.

    view type            INSERT                 MODIFY                    REMOVE
    NEW_AND_OLD_IMAGES   all added, True        diff_images(), True       all removed, True
    NEW_IMAGE            all added, True        [], False                 [], False
    OLD_IMAGE            [], False              [], False                 all removed, True
    KEYS_ONLY            [], False              [], False                 [], False

    INSERT on NEW_IMAGE is whole: the item did not exist before, so every attribute is new.
    REMOVE on OLD_IMAGE is whole for the same reason the other way round. MODIFY needs both
    images: with only the new one we cannot tell which attributes it changed, and a guess
    ("everything") would be a lie, so we say nothing. Records with no image (KEYS_ONLY, INSERT
    on OLD_IMAGE, REMOVE on NEW_IMAGE) say nothing about attributes; their Keys, which the
    caller has, still identify the item. An image the view type does not promise is ignored,
    and an image it promises but that is missing gives [], False rather than a made-up diff.
    """
    if view_type not in VIEW_TYPES:
        raise ValueError(f"unknown StreamViewType {view_type!r}")
    if event_name not in EVENT_NAMES:
        raise ValueError(f"unknown eventName {event_name!r}")
    old = old_image if view_type in _CARRIES_OLD else None
    new = new_image if view_type in _CARRIES_NEW else None
    if event_name == "INSERT":
        if new is None:
            return [], False
        return _all_added(new), True
    if event_name == "REMOVE":
        if old is None:
            return [], False
        return _all_removed(old), True
    if old is None or new is None:
        return [], False
    return diff_images(old=old, new=new), True


def _shorten(text):
    if len(text) > _SUMMARY_WIDTH:
        return text[: _SUMMARY_WIDTH - 1] + "…"
    return text


def _binary_size(text):
    padding = text.count("=", -2)
    return len(text) * 3 // 4 - padding


def _member(tag, member):
    if is_mask(member):
        return member
    if tag == "SS":
        return _quote(member)
    if tag == "BS":
        return f"<{_binary_size(member)} bytes>"
    return member


def _members(tag, members):
    if is_mask(members):
        return members
    return _shorten("{" + ", ".join(_member(tag, member) for member in members) + "}")


def _render(value):
    tag, inner = typed_entry(value)
    if is_mask(inner):
        return inner
    if tag == "S":
        text = _quote(inner)
    elif tag == "N":
        text = inner
    elif tag == "BOOL":
        text = "true" if inner else "false"
    elif tag == "NULL":
        text = "null"
    elif tag == "B":
        text = f"<{_binary_size(inner)} bytes>"
    elif tag in _SET_TAGS:
        return _members(tag, inner)
    else:
        text = _compact_json(to_display(value))
    return _shorten(text)


def _describe(change):
    kind, path = change["kind"], change["path"]
    if kind == "added":
        return f"+{path}"
    if kind == "removed":
        return f"-{path}"
    old, new = change["old"], change["new"]
    if kind == "type_changed":
        return f"{path}: {typed_entry(old)[0]} {_render(old)} → {typed_entry(new)[0]} {_render(new)}"
    if "added" in change:
        tag = typed_entry(new)[0]
        parts = [path]
        if change["added"]:
            parts.append("+" + _members(tag, change["added"]))
        if change["removed"]:
            parts.append("-" + _members(tag, change["removed"]))
        return " ".join(parts)
    return f"{path}: {_render(old)} → {_render(new)}"


def summarize(changes: list[dict], *, limit: int = 3) -> str:
    """One line for people, e.g. `status: "PENDING" → "SHIPPED", +tracking, -coupon`.

    Changed values show old → new (strings quoted, numbers bare, binary as <n bytes>, maps and
    lists as compact JSON), added paths +path, removed -path, sets `tags +{"a"} -{"b"}`, type
    changes `qty: N 1 → S "1"`. Values are cut at 40 characters with "…". Past `limit` changes
    the line ends with ", … (+N more)". No changes give "".
    """
    parts = [_describe(change) for change in changes[:limit]]
    if len(changes) > limit:
        parts.append(f"… (+{len(changes) - limit} more)")
    return ", ".join(parts)

"""Writing and checking the audit log's hash chain: the one home of both.

Each AuditEntry stores `prev_hash`, the hash of the entry before it ("0" * 64 for the first),
and `hash`, sha256 over the canonical JSON of its own content including prev_hash
(entry_canonical), a text it also keeps as `canonical`. audit_record appends under a lock on
the AuditChainHead row, so the chain never forks; audit_verify walks it. Nothing here reads
item data: callers pass what changed on a configuration object or what an operator asked for,
never a record's values.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from audit.models import AuditChainHead, AuditEntry

GENESIS = "0" * 64
# The action of the entry audit_record adds when it finds the head missing or set back.
HEAD_RESTORED = "audit.chain.head_restored"
HASHED_FIELDS = ("id", "at", "actor", "actor_id", "address", "action", "target_type", "target_id", "target_repr",
                 "before", "after", "details", "prev_hash")


def json_safe(value):
    """`value` as plain JSON types (datetimes and decimals as Django's JSON encoder writes them),
    so that what is hashed is what the JSONField gives back."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def entry_content(entry: AuditEntry) -> dict:
    """The entry's HASHED_FIELDS as JSON values, `at` as ISO 8601 in UTC with microseconds."""
    content = {name: getattr(entry, name) for name in HASHED_FIELDS}
    content["at"] = entry.at.astimezone(UTC).isoformat()
    return content


def entry_canonical(entry: AuditEntry) -> str:
    """The text an entry's hash is taken over: entry_content as JSON with sorted keys, no
    spaces, non-ASCII as is."""
    return json.dumps(entry_content(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def text_hash(text: str) -> str:
    """sha256 hex of `text` as UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """text_hash of entry_canonical(entry): the hash of the entry's content as it is in memory
    (for an entry read back from PostgreSQL, as jsonb spells it, which may not be what was hashed)."""
    return text_hash(entry_canonical(entry))


def json_same(a, b) -> bool:
    """Whether two JSON values are the same value, comparing numbers as numbers: jsonb keeps a
    number's value, not its spelling, and gives 1e+20 back as the int 100000000000000000000 and
    1.5e-07 as 0.00000015. Booleans are not numbers here; dict key order does not count."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, float) or isinstance(b, float):
            try:
                return float(a) == float(b)
            except OverflowError:  # an int beyond any float: no float stands for it
                return False
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(json_same, a, b))
    return type(a) is type(b) and a == b


def entry_problem(entry: AuditEntry) -> str | None:
    """What no longer holds about one entry read back from the database, as the end of a
    sentence, or None when its content still hashes to its `hash`.

    An entry that keeps its canonical text is checked twice: the text must hash to `hash`, and
    the text's values must be the columns' values (json_same), so an edit to either shows. An
    entry written before the text was kept (canonical "") can only have its columns hashed again.
    """
    if not entry.canonical:
        return None if entry_hash(entry) == entry.hash else "its content was changed after it was written"
    if text_hash(entry.canonical) != entry.hash:
        return "its hashed text was changed after it was written"
    try:
        hashed = json.loads(entry.canonical)
    except ValueError:
        hashed = None
    if not isinstance(hashed, dict) or hashed.keys() != set(HASHED_FIELDS):
        return "its hashed text was replaced after it was written"
    columns = json.loads(json.dumps(entry_content(entry)))
    changed = [name for name in HASHED_FIELDS if not json_same(hashed[name], columns[name])]
    if changed:
        return f"its {', '.join(changed)} changed after it was written"
    return None


def request_address(request) -> str:
    """Where `request` came from: REMOTE_ADDR, or, when AUDIT_TRUST_X_FORWARDED_FOR is set (a
    proxy in front that overwrites the header), the first X-Forwarded-For hop. "" without one."""
    if request is None:
        return ""
    if settings.AUDIT_TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[0].strip()
        if forwarded:
            return forwarded[:45]
    return request.META.get("REMOTE_ADDR", "")[:45]


def chain_tail() -> tuple[int, str]:
    """(id, hash) of the entry with the highest id; (0, GENESIS) while there is none."""
    return AuditEntry.objects.order_by("-id").values_list("id", "hash").first() or (0, GENESIS)


def _head_locked() -> tuple[AuditChainHead, bool]:
    """The head row, locked, and whether it was missing at first look."""
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is not None:
        return head, False
    # The first append ever (or after a test's flush), or a head someone deleted; a racing
    # append loses the insert here and waits on the lock below.
    AuditChainHead.objects.bulk_create([AuditChainHead(pk=1, last_id=0, hash=GENESIS)], ignore_conflicts=True)
    return AuditChainHead.objects.select_for_update().get(pk=1), True


def _append(head: AuditChainHead, **fields) -> AuditEntry:
    entry = AuditEntry(id=head.last_id + 1, at=timezone.now(), prev_hash=head.hash, **fields)
    entry.canonical = entry_canonical(entry)
    entry.hash = text_hash(entry.canonical)
    entry.save(force_insert=True)
    head.last_id, head.hash = entry.id, entry.hash
    head.save(update_fields=["last_id", "hash"])
    return entry


def audit_record(*, actor, action: str, target=None, before: dict | None = None, after: dict | None = None,
                 request=None, details: dict | None = None) -> AuditEntry:
    """Append one entry and return it.

    actor: a User, a username (str) or None (Shardwatch itself; an anonymous request's user
    counts as None). action: "<app_label>.<model>.<verb>". target: a model instance or None.
    before/after: {field: value} of what changed, secrets already masked (audit.capture.MASK).
    request: the HttpRequest the action came in on, for the address. details: anything else
    JSON can hold (an export's filters and row count); never item data.

    Runs in its own atomic block (a savepoint inside the caller's transaction, so the entry
    commits or rolls back with the change it describes) and holds the chain head's row lock
    until that transaction ends.

    A damaged head never stops a write. When the head is missing (deleted) or names an entry
    before the last one there is (set back), appending after it would reuse an id and fail, and
    starting again at 1 would hide everything before. So the chain continues after its last
    entry, and first gets one entry more, HEAD_RESTORED, saying what the head was found as
    (details {"head": null} or {"head": {"last_id", "hash"}, "last_entry_id"}): the damage is
    written into the chain itself, and audit_verify names that entry for as long as the log is
    kept. A head that names entries beyond the last one (the last entries were deleted) is
    appended after as it is: the hole that leaves is what audit_verify reports.
    """
    username, user_id = "", None
    if actor is not None and not isinstance(actor, str):
        if getattr(actor, "is_authenticated", False):
            username, user_id = actor.get_username(), actor.pk
    elif actor:
        username = actor
    target_type = target_id = target_repr = ""
    if target is not None:
        target_type = target._meta.label_lower
        target_id = str(target.pk)
        target_repr = str(target)[:200]
    with transaction.atomic():
        head, was_missing = _head_locked()
        tail_id, tail_hash = chain_tail()
        if tail_id > head.last_id:
            found = None if was_missing else {"last_id": head.last_id, "hash": head.hash}
            head.last_id, head.hash = tail_id, tail_hash
            _append(head, actor="", actor_id=None, address="", action=HEAD_RESTORED, target_type="", target_id="",
                    target_repr="", before={}, after={}, details={"head": found, "last_entry_id": tail_id})
        entry = _append(
            head, actor=username[:150], actor_id=user_id, address=request_address(request), action=action,
            target_type=target_type, target_id=target_id, target_repr=target_repr, before=json_safe(before or {}),
            after=json_safe(after or {}), details=json_safe(details or {}),
        )
    return entry


@dataclass(frozen=True)
class ChainBreak:
    """Where the chain stops holding: `entry_id` (the entry whose content no longer matches its
    hash, the first one after a hole, a HEAD_RESTORED entry, or None for a missing head) and a
    sentence saying what is wrong."""

    entry_id: int | None
    problem: str


def _restored_problem(entry: AuditEntry) -> str:
    found = entry.details.get("head") if isinstance(entry.details, dict) else None
    what = "was missing" if found is None else f"had been set back to entry {found.get('last_id')}"
    return (f"head restored at entry {entry.id}: the chain head {what} when the next entry was written, "
            f"so the chain was continued after entry {entry.id - 1}")


def audit_verify(*, batch: int = 1000) -> tuple[int, list[ChainBreak]]:
    """Walk the chain from the first entry: (entries checked, breaks in order). An edited entry
    shows as a hash mismatch at its id (entry_problem); a deleted one as a broken link between
    the ids either side of the hole (ids are 1..N, see AuditEntry.id); a deleted last entry as a
    head that names an entry the table no longer has; a deleted head as a missing head while
    entries exist, and, once audit_record has written again, as the HEAD_RESTORED entry it
    left. Empty breaks: intact. A TRUNCATE of both tables leaves nothing to check: compare
    chain_tail with a copy kept elsewhere (`manage.py audit_verify` prints it)."""
    breaks: list[ChainBreak] = []
    expected_prev, expected_id, checked = GENESIS, 1, 0
    last_id = 0
    while True:
        entries = list(AuditEntry.objects.filter(id__gt=last_id).order_by("id")[:batch])
        if not entries:
            break
        for entry in entries:
            checked += 1
            if entry.id != expected_id or entry.prev_hash != expected_prev:
                breaks.append(ChainBreak(entry.id, f"link broken between entry {last_id or 'start'} and entry {entry.id}"
                                         + (f" (entries {expected_id}..{entry.id - 1} are missing)" if entry.id > expected_id else "")))
            problem = entry_problem(entry)
            if problem:
                breaks.append(ChainBreak(entry.id, f"hash mismatch at entry {entry.id}: {problem}"))
            if entry.action == HEAD_RESTORED:
                breaks.append(ChainBreak(entry.id, _restored_problem(entry)))
            expected_prev, expected_id, last_id = entry.hash, entry.id + 1, entry.id
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is None:
        if checked:
            breaks.append(ChainBreak(None, f"the chain head is missing though entries run to {last_id}: it was deleted"))
    elif head.last_id > last_id:
        breaks.append(ChainBreak(head.last_id, f"link broken between entry {last_id or 'start'} and the head, "
                                               f"which names entry {head.last_id}: the last entries are missing"))
    elif head.last_id < last_id:
        breaks.append(ChainBreak(head.last_id, f"the chain head names entry {head.last_id} though entries run to "
                                               f"{last_id}: it was set back"))
    elif last_id and head.hash != expected_prev:
        breaks.append(ChainBreak(last_id, f"link broken between entry {last_id} and the head, whose hash is not "
                                          f"that entry's: one of them was changed"))
    return checked, breaks


def audit_update(*, queryset, changes: dict, verb: str, request) -> int:
    """queryset.update(**changes), with one entry ("<app_label>.<model>.<verb>", actor the
    request's user) per row whose values it changes, before/after holding those fields. For
    admin actions such as enable and disable, which update in bulk and so send no model signals.
    Returns what queryset.update returns (rows matched)."""
    with transaction.atomic():
        names = list(changes)
        # By pk: an admin changelist's queryset may join (list_select_related), and PostgreSQL
        # will not lock the nullable side of an outer join.
        rows = list(queryset.model._default_manager.filter(pk__in=queryset.values("pk")).select_for_update())
        updated = queryset.model._default_manager.filter(pk__in=[row.pk for row in rows]).update(**changes)
        label = queryset.model._meta.label_lower
        user = getattr(request, "user", None)
        for row in rows:
            before = {name: getattr(row, name) for name in names if getattr(row, name) != changes[name]}
            if before:
                audit_record(actor=user, action=f"{label}.{verb}", target=row, before=before,
                             after={name: changes[name] for name in before}, request=request)
    return updated

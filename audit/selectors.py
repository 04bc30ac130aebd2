"""Reading the audit log for the Audit page: AuditFilter and keyset pages of entries."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from audit.models import AuditEntry

PAGE = 50


class AuditFilterError(ValueError):
    """A filter parameter that cannot be read; the message names it."""


def _time(params: Mapping, name: str) -> datetime | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    parsed = parse_datetime(raw if "T" in raw else raw.replace(" ", "T", 1))
    if parsed is None:
        raise AuditFilterError(f"{name} must be a date and time such as 2026-01-31T13:45 (UTC unless it says otherwise).")
    return make_aware(parsed) if is_naive(parsed) else parsed


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to show: `actor` (a username, exact: entries by that user, and those whose
    target is their account, such as failed logins), `action` (exact, or a prefix ending
    in "." such as "workers.trigger."), `since` and `until` (aware datetimes, inclusive)."""

    actor: str = ""
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_params(cls, params: Mapping) -> "AuditFilter":
        """From a query string (user, action, since, until); AuditFilterError on a bad time."""
        return cls(actor=(params.get("user") or "").strip(), action=(params.get("action") or "").strip(),
                   since=_time(params, "since"), until=_time(params, "until"))

    def to_params(self) -> list[tuple[str, str]]:
        pairs = [("user", self.actor), ("action", self.action),
                 ("since", self.since.isoformat() if self.since else ""), ("until", self.until.isoformat() if self.until else "")]
        return [(name, value) for name, value in pairs if value]

    def apply(self, queryset):
        if self.actor:
            # By the user, or about their account (a failed login is by no one, to them).
            queryset = queryset.filter(Q(actor=self.actor) | Q(target_type="auth.user", target_repr=self.actor))
        if self.action:
            queryset = queryset.filter(action__startswith=self.action) if self.action.endswith(".") else queryset.filter(action=self.action)
        if self.since:
            queryset = queryset.filter(at__gte=self.since)
        if self.until:
            queryset = queryset.filter(at__lte=self.until)
        return queryset


def audit_entries_page(*, flt: AuditFilter, before_id: int | None = None, limit: int = PAGE) -> tuple[list[AuditEntry], int | None]:
    """Up to `limit` entries matching `flt`, newest first, with ids below `before_id` (keyset
    paging), and the before_id of the next page (None on the last)."""
    queryset = flt.apply(AuditEntry.objects.all())
    if before_id is not None:
        queryset = queryset.filter(id__lt=before_id)
    entries = list(queryset.order_by("-id")[: limit + 1])
    following = entries[limit - 1].id if len(entries) > limit else None
    return entries[:limit], following


def audit_actions() -> list[str]:
    """The actions the log holds, for the page's action filter."""
    return list(AuditEntry.objects.order_by("action").values_list("action", flat=True).distinct())

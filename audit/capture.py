"""What writes audit entries without its callers asking: creating, editing and deleting the
configuration models (AUDITED_MODELS, through Django's model signals), the membership changes of
users and groups (m2m_changed), and logins and failed logins (django.contrib.auth's signals).

Model signals rather than django-auditlog: its 3.4.1 declares support up to Django 5.2 (this runs
6.1) and keeps its own LogEntry table, which would have to be copied into the chain anyway.

The user and address of a change come from the request AuditRequestMiddleware holds for the
duration of each request (a context variable, so it is per thread and per asyncio task); a
change made outside a request (a migration, a shell, a Celery task) is recorded with no actor.
The models are named by label, not imported: the audit app sits below the apps that own them.
"""

import hashlib
import hmac
from contextvars import ContextVar

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from audit.chain import audit_record

MASK = "********"

# model label -> fields whose values are secrets: an entry says they changed, never what to.
# A Slack channel's URL is its credential (dashboard/roles.py keeps channels from the Viewer).
AUDITED_MODELS: dict[str, frozenset[str]] = {
    "streams.StreamSource": frozenset(),
    "streams.MaskingRule": frozenset(),
    "workers.Trigger": frozenset({"webhook_secret_encrypted"}),
    "alerts.Rule": frozenset(),
    "alerts.Channel": frozenset({"secret_encrypted", "url"}),
    "auth.User": frozenset({"password"}),
    "auth.Group": frozenset(),
}
# Saved on every login by Django itself; the login has its own entry.
IGNORED_FIELDS = frozenset({"last_login"})

_request: ContextVar = ContextVar("audit_request", default=None)


class AuditRequestMiddleware:
    """Holds the request for the audit entries written while it is handled. Put it after
    AuthenticationMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def request_current():
    """The request being handled on this thread or task, or None."""
    return _request.get()


def _actor(request):
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def fields_snapshot(*, instance, masked: frozenset[str] = frozenset()) -> dict:
    """{field name: value} of `instance`'s concrete fields (foreign keys as their ids), with the
    `masked` ones replaced by MASK when set."""
    snapshot = {}
    for field in instance._meta.concrete_fields:
        value = getattr(instance, field.attname)
        if field.name in masked and value not in ("", None):
            value = MASK
        snapshot[field.name] = value
    return snapshot


def fields_changed(*, before: dict, after: dict) -> tuple[dict, dict]:
    """The entries of `before` and `after` whose values differ, as (before, after). A masked field
    that was replaced by another secret shows as MASK -> MASK: changed, values unknown."""
    names = [name for name in after if name not in IGNORED_FIELDS and before.get(name) != after[name]]
    return {name: before.get(name) for name in names}, {name: after[name] for name in names}


def _masked(sender) -> frozenset[str]:
    return AUDITED_MODELS[sender._meta.label]


def _before_save(sender, instance, raw=False, **kwargs):
    if raw or instance.pk is None:
        return
    current = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = fields_snapshot(instance=current, masked=_masked(sender)) if current else None
    if current is not None:
        instance._audit_secrets = {name: getattr(current, name) for name in _masked(sender)}


def _after_save(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    masked = _masked(sender)
    before = getattr(instance, "_audit_before", None)
    after = fields_snapshot(instance=instance, masked=masked)
    if created or before is None:
        before_changed, after_changed, verb = {}, {k: v for k, v in after.items() if k not in IGNORED_FIELDS}, "add"
    else:
        before_changed, after_changed = fields_changed(before=before, after=after)
        # A secret replaced by another reads MASK both times; compare the stored values.
        old_secrets = getattr(instance, "_audit_secrets", {})
        for name in masked:
            if name not in after_changed and old_secrets.get(name) != getattr(instance, name) and old_secrets.get(name) not in ("", None):
                before_changed[name], after_changed[name] = MASK, MASK
        verb = "change"
        if not after_changed:
            return
    instance._audit_before = None
    request = request_current()
    audit_record(actor=_actor(request), action=f"{sender._meta.label_lower}.{verb}", target=instance,
                 before=before_changed, after=after_changed, request=request)


def _after_delete(sender, instance, **kwargs):
    request = request_current()
    before = {k: v for k, v in fields_snapshot(instance=instance, masked=_masked(sender)).items() if k not in IGNORED_FIELDS}
    audit_record(actor=_actor(request), action=f"{sender._meta.label_lower}.delete", target=instance,
                 before=before, after={}, request=request)


def _members_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    """User.groups, User.user_permissions, Group.permissions, Rule.channels and the like, from
    either side: {field: [added or removed pks]} as after (add) or before (remove, clear)."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if instance._meta.label not in AUDITED_MODELS or type(instance) is not apps.get_model(instance._meta.label):
        return  # a migration's historical model: the audit table may not exist yet
    field = next((f.name for f in instance._meta.many_to_many if f.remote_field.through is sender), None)
    if field is None:
        field = next((r.get_accessor_name() for r in instance._meta.related_objects
                      if r.many_to_many and r.through is sender), "members")
    if action == "pre_clear":
        pk_set = set(getattr(instance, field).values_list("pk", flat=True))
    if not pk_set:
        return
    ids = sorted(pk_set)
    before, after = ({}, {field: ids}) if action == "post_add" else ({field: ids}, {})
    verb = "add" if action == "post_add" else "remove"
    request = request_current()
    audit_record(actor=_actor(request), action=f"{instance._meta.label_lower}.{field}_{verb}", target=instance,
                 before=before, after=after, request=request)


def _logged_in(sender, request, user, **kwargs):
    audit_record(actor=user, action="auth.user.login", target=user, request=request)


def login_failed_details(*, username: str) -> dict:
    """What a failed login's entry keeps of the name typed: {"username": name} when a user of
    that name exists; else {"username": "unknown user", "attempt": 16 hex characters}, a keyed
    hash (HMAC-SHA256 with SECRET_KEY) so that repeated attempts with one name can be grouped.
    People type passwords into the username box; those must not be stored readable."""
    if username and get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: username}).exists():
        return {"username": username}
    attempt = hmac.new(settings.SECRET_KEY.encode(), b"audit-login-failed:" + username.encode(), hashlib.sha256)
    return {"username": "unknown user", "attempt": attempt.hexdigest()[:16]}


def _login_failed(sender, credentials, request=None, **kwargs):
    # credentials arrive cleansed (the password masked); only the name tried is considered.
    username = str(credentials.get("username", ""))[:150]
    details = login_failed_details(username=username)
    # The account tried, when there is one, is the entry's target: the Audit page's user filter
    # finds an account's failed logins with its other entries.
    target = None
    if details["username"] == username:
        target = get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    audit_record(actor=None, action="auth.user.login_failed", target=target, request=request, details=details)


def receivers_connect() -> None:
    """Connect the receivers above; AuditConfig.ready calls it once."""
    for label in AUDITED_MODELS:
        model = apps.get_model(label)
        uid = f"audit:{label}"
        pre_save.connect(_before_save, sender=model, dispatch_uid=uid)
        post_save.connect(_after_save, sender=model, dispatch_uid=uid)
        post_delete.connect(_after_delete, sender=model, dispatch_uid=uid)
    m2m_changed.connect(_members_changed, dispatch_uid="audit:m2m")
    user_logged_in.connect(_logged_in, dispatch_uid="audit:login")
    user_login_failed.connect(_login_failed, dispatch_uid="audit:login_failed")

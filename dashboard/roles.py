"""The three roles, Viewer, Operator and Admin, as Django groups and the permissions each holds:
the one home of that mapping. The data migration dashboard/migrations/0001_roles.py makes the
groups from it, `demo_admin` makes one user of each role, and every view, API endpoint,
websocket, export and admin action checks one of these permissions (never a role's name), so a
group an installation builds for itself works too.

Permission names are Django's ("<app_label>.<codename>"): the model permissions view_, add_,
change_, delete_ and the custom ones declared in the owning models' Meta:
  streams.export_changerecord          export the feed as NDJSON or CSV
  streams.view_unmasked_changerecord   ask to see item data unmasked ("Show unmasked", audited each time);
                                       everyone else sees it as the masking rules say (streams.masking)
  workers.operate_trigger              enable, disable, reset positions, replay; skip or bisect a failing batch
  workers.retry_deadletter             retry dead-letter entries
  alerts.silence_alertstate            silence an alert, lift a silence
  dashboard.add_apitoken               make API tokens for oneself, and revoke one's own
                                       (dashboard/tokens.py); a token holds its owner's permissions

A superuser holds every permission whatever the groups say (Django's rule).
"""

from django.apps import apps as global_apps
from django.db import transaction

VIEWER = "Viewer"
OPERATOR = "Operator"
ADMIN = "Admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

# Every dashboard page and the admin's lists, read-only. Alert channels are left out: their URLs
# carry credentials (a Slack incoming webhook's URL is its secret).
_VIEWER = (
    "streams.view_streamsource",
    "streams.view_stream",
    "streams.view_shard",
    "streams.view_gap",
    "streams.view_changerecord",
    # Which paths are masked, never what they hold: a viewer reading ••• can see why.
    "streams.view_maskingrule",
    "workers.view_trigger",
    "workers.view_triggercursor",
    "workers.view_invocation",
    "workers.view_deadletter",
    "alerts.view_rule",
    "alerts.view_alertstate",
    "alerts.view_alerttransition",
    "alerts.view_delivery",
    "dashboard.add_apitoken",
)

# Running things, not configuring them.
_OPERATOR = _VIEWER + (
    "workers.operate_trigger",
    "workers.retry_deadletter",
    "alerts.silence_alertstate",
    "streams.export_changerecord",
)

# Configuring sources and their masking rules, triggers, alert rules and channels, and users;
# unmasked data; the audit log.
_ADMIN = _OPERATOR + (
    "streams.add_streamsource",
    "streams.change_streamsource",
    "streams.delete_streamsource",
    "streams.add_maskingrule",
    "streams.change_maskingrule",
    "streams.delete_maskingrule",
    "workers.add_trigger",
    "workers.change_trigger",
    "workers.delete_trigger",
    "alerts.view_channel",
    "alerts.add_channel",
    "alerts.change_channel",
    "alerts.delete_channel",
    "alerts.add_rule",
    "alerts.change_rule",
    "alerts.delete_rule",
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "auth.delete_user",
    "auth.view_group",
    "streams.view_unmasked_changerecord",
    # Everyone's tokens in the admin, and revoking them (change_).
    "dashboard.view_apitoken",
    "dashboard.change_apitoken",
    "audit.view_auditentry",
)

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {VIEWER: _VIEWER, OPERATOR: _OPERATOR, ADMIN: _ADMIN}


def roles_sync(*, apps=global_apps) -> dict[str, list[str]]:
    """Make the ROLES groups hold exactly ROLE_PERMISSIONS's permissions, creating the groups
    and any permission rows Django has not made yet (it makes them after `migrate`, in
    post_migrate, which is too late for a data migration). `apps` is a migration's historical
    registry, or the live one.

    A permission that does not exist in `apps` is left out and returned, {role: [names]}: a
    migration run before the model that declares it. The migration that adds such a permission
    must call roles_sync again; tests/access checks that none is missing once migrated.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    missing: dict[str, list[str]] = {}
    with transaction.atomic():
        for role, names in ROLE_PERMISSIONS.items():
            wanted = {tuple(name.split(".", 1)) for name in names}
            found = [
                perm
                for perm in Permission.objects.select_related("content_type")
                if (perm.content_type.app_label, perm.codename) in wanted
            ]
            got = {(perm.content_type.app_label, perm.codename) for perm in found}
            if got != wanted:
                missing[role] = sorted(f"{app}.{codename}" for app, codename in wanted - got)
            group, _ = Group.objects.get_or_create(name=role)
            group.permissions.set(found)
    return missing


def role_grant(*, user, role: str) -> None:
    """Put `user` in `role`'s group (one of ROLES) and no other role's; groups that are not
    roles are kept. The groups must exist (roles_sync). Raises ValueError for another name."""
    from django.contrib.auth.models import Group

    if role not in ROLES:
        raise ValueError(f"No role {role!r}; the roles are {', '.join(ROLES)}.")
    user.groups.remove(*Group.objects.filter(name__in=ROLES).exclude(name=role))
    user.groups.add(Group.objects.get(name=role))

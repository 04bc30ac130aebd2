"""Makes the Viewer, Operator and Admin groups (dashboard/roles.py) and places the users that
exist before roles did, so that an upgrade locks nobody out and grants nobody more than they had:

- superusers: unchanged (they hold every permission anyway);
- staff users who already hold both the add_ and change_ permissions of sources
  (streams.streamsource) or of triggers (workers.trigger), themselves or through a group: Admin;
- every other active user, staff or not (they could read every page before): Viewer. In Django
  is_staff grants no permission by itself, only the admin's door;
- inactive users: no role.

A user who is already in one of the three groups keeps what they have. Who went where is
printed. Reversing removes the three groups (and with them every membership of them).
"""

from django.db import migrations
from django.db.models import Q

from dashboard.roles import ADMIN, ROLES, VIEWER, roles_sync


# (app_label, codename) pairs: holding either pair, with is_staff, made a user an Admin.
CONFIGURERS = (
    {("streams", "add_streamsource"), ("streams", "change_streamsource")},
    {("workers", "add_trigger"), ("workers", "change_trigger")},
)


def held_permissions(*, Permission, user) -> set[tuple[str, str]]:
    """(app_label, codename) of what `user` (a historical User) holds itself or through groups."""
    return set(
        Permission.objects.filter(Q(user=user) | Q(group__user=user))
        .values_list("content_type__app_label", "codename")
        .distinct()
    )


def roles_create(apps, schema_editor):
    roles_sync(apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model("auth", "User")
    groups = {group.name: group for group in Group.objects.filter(name__in=ROLES)}
    placed = User.objects.filter(groups__name__in=ROLES)
    unplaced = User.objects.filter(is_active=True, is_superuser=False).exclude(pk__in=placed).order_by("username")
    for user in unplaced:
        held = held_permissions(Permission=Permission, user=user) if user.is_staff else set()
        role = ADMIN if any(pair <= held for pair in CONFIGURERS) else VIEWER
        user.groups.add(groups[role])
        print(f"  roles: {user.username} -> {role}")


def roles_delete(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("streams", "0015_record_permissions"),
        ("workers", "0005_operate_permissions"),
        ("alerts", "0004_silence_permission"),
    ]

    operations = [migrations.RunPython(roles_create, roles_delete)]

"""Makes the Viewer, Operator and Admin groups (dashboard/roles.py) and places the users that
exist before roles did, so that an upgrade locks nobody out:

- superusers: unchanged (they hold every permission anyway);
- other staff users (they could use the admin before): Admin;
- every other active user (they could read every page before): Viewer;
- inactive users: no role.

A user who is already in one of the three groups keeps what they have. Reversing removes the
three groups (and with them every membership of them).
"""

from django.db import migrations

from dashboard.roles import ADMIN, ROLES, VIEWER, roles_sync


def roles_create(apps, schema_editor):
    roles_sync(apps=apps)
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    groups = {group.name: group for group in Group.objects.filter(name__in=ROLES)}
    placed = User.objects.filter(groups__name__in=ROLES)
    unplaced = User.objects.filter(is_active=True, is_superuser=False).exclude(pk__in=placed)
    for user in unplaced.filter(is_staff=True):
        user.groups.add(groups[ADMIN])
    for user in unplaced.filter(is_staff=False):
        user.groups.add(groups[VIEWER])


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

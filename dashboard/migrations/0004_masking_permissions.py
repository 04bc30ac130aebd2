"""Gives the Admin role the masking rules' permissions (streams.*_maskingrule), as
dashboard/roles.py says."""

from django.db import migrations

from dashboard.roles import roles_sync


def roles_resync(apps, schema_editor):
    roles_sync(apps=apps)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0003_audit_permission"),
        ("streams", "0016_masking_rules"),
    ]

    operations = [migrations.RunPython(roles_resync, migrations.RunPython.noop)]

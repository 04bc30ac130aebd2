"""Gives the Admin role audit.view_auditentry (the Audit page), as dashboard/roles.py says."""

from django.db import migrations

from dashboard.roles import roles_sync


def roles_resync(apps, schema_editor):
    roles_sync(apps=apps)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0002_api_tokens"),
        ("audit", "0001_audit_log"),
    ]

    operations = [migrations.RunPython(roles_resync, migrations.RunPython.noop)]

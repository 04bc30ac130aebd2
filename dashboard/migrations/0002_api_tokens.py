"""API tokens (dashboard/tokens.py), and the roles' permissions on them (dashboard/roles.py):
roles_sync runs again now that dashboard.add_apitoken and its kin exist."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from dashboard.roles import roles_sync


def roles_resync(apps, schema_editor):
    roles_sync(apps=apps)


class Migration(migrations.Migration):

    dependencies = [
        ('dashboard', '0001_roles'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='What the token is for, as its owner named it.', max_length=100)),
                ('digest', models.CharField(editable=False, max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField()),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'API token',
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.RunPython(roles_resync, migrations.RunPython.noop),
    ]

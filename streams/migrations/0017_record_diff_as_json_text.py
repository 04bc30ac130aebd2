import streams.models
from django.db import migrations


def keep_lz4(apps, schema_editor):
    # Changing a column's type rewrites it; say again that its large values use lz4 (0002).
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")
        if cursor.fetchone():
            cursor.execute("ALTER TABLE streams_changerecord ALTER COLUMN diff SET COMPRESSION lz4")


class Migration(migrations.Migration):
    """A diff holds values of the images, and jsonb refuses a string holding U+0000, which
    DynamoDB allows: a record with one could not be stored. json takes it (PostgreSQL docs,
    "JSON Types"), and nothing reads a diff but whole."""

    dependencies = [
        ('streams', '0016_masking_rules'),
    ]

    operations = [
        migrations.AlterField(
            model_name='changerecord',
            name='diff',
            field=streams.models.StoredJSONField(default=list),
        ),
        migrations.RunPython(keep_lz4, migrations.RunPython.noop),
    ]

import streams.models
from django.db import migrations



def keep_lz4(apps, schema_editor):
    # Changing a column's type rewrites it; say again that its large values use lz4 (0002).
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")
        if cursor.fetchone():
            cursor.execute(
                "ALTER TABLE streams_changerecord "
                + ", ".join(f"ALTER COLUMN {column} SET COMPRESSION lz4" for column in ("keys", "old_image", "new_image"))
            )


class Migration(migrations.Migration):

    dependencies = [
        ('streams', '0008_record_fk_indexes_covered'),
    ]

    operations = [
        migrations.AlterField(
            model_name='changerecord',
            name='keys',
            field=streams.models.StoredJSONField(),
        ),
        migrations.AlterField(
            model_name='changerecord',
            name='new_image',
            field=streams.models.StoredJSONField(null=True),
        ),
        migrations.AlterField(
            model_name='changerecord',
            name='old_image',
            field=streams.models.StoredJSONField(null=True),
        ),
        migrations.RunPython(keep_lz4, migrations.RunPython.noop),
    ]

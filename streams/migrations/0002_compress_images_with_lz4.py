from django.db import migrations

COLUMNS = ["keys", "old_image", "new_image", "diff"]


def use_lz4(apps, schema_editor):
    # PostgreSQL compresses large JSON values with pglz by default; lz4 is several times
    # cheaper on the ingest path. Builds without lz4 keep pglz, which is only slower.
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")
        if cursor.fetchone():
            cursor.execute(
                "ALTER TABLE streams_changerecord "
                + ", ".join(f"ALTER COLUMN {column} SET COMPRESSION lz4" for column in COLUMNS)
            )


class Migration(migrations.Migration):
    dependencies = [("streams", "0001_initial")]
    operations = [migrations.RunPython(use_lz4, migrations.RunPython.noop)]

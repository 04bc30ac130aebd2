import logging

from django.db import migrations

log = logging.getLogger(__name__)


def add_trigram_index(apps, schema_editor):
    # "Which records changed promo?" is a substring match on changed_paths. Without an index a
    # rarely changed path scans the whole history before a page fills; a trigram index finds
    # the few rows directly. PostgreSQL only; pg_trgm ships with PostgreSQL and is a trusted
    # extension, so the database owner may create it. Where it cannot, filters still work.
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        if not cursor.fetchone():
            log.warning("pg_trgm is not available: attribute-path filters will scan instead of using an index")
            return
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        cursor.execute(
            "CREATE INDEX IF NOT EXISTS record_changed_paths_trgm "
            "ON streams_changerecord USING gin (changed_paths gin_trgm_ops)"
        )


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS record_changed_paths_trgm")


class Migration(migrations.Migration):
    dependencies = [("streams", "0006_record_rates")]
    operations = [migrations.RunPython(add_trigram_index, drop_trigram_index)]

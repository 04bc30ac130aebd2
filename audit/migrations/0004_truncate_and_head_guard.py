"""On PostgreSQL, the audit tables cannot be emptied with TRUNCATE (which fires no row trigger,
so 0002's trigger never saw it), and the chain head's row cannot be deleted or moved back.

A session that sets `shardwatch.audit_allow_truncate` to `on` may TRUNCATE: the test settings
set it on their connections, because Django's flush between transactional tests truncates
every table. That setting, like ALTER TABLE ... DISABLE TRIGGER, is open to whoever may
truncate the tables at all; these triggers stop a mistaken `manage.py flush` or a careless
script, not the tables' owner. What the owner does anyway, audit_verify notices, except the
whole log emptied or rewritten: for that, keep the last hash it prints elsewhere."""

from django.db import migrations

CREATE = """
CREATE FUNCTION audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('shardwatch.audit_allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit log cannot be truncated: TRUNCATE % refused', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_auditchainhead
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();

CREATE FUNCTION audit_head_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the audit chain head cannot be deleted';
    END IF;
    -- audit_record only ever moves the head on to the entry it has just appended.
    IF NEW.id <> OLD.id OR NEW.last_id <= OLD.last_id THEN
        RAISE EXCEPTION 'the audit chain head only moves forward: last_id % to % refused', OLD.last_id, NEW.last_id;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION audit_head_refuse_change();
"""
DROP = """
DROP TRIGGER IF EXISTS audit_head_forward_only ON audit_auditchainhead;
DROP FUNCTION IF EXISTS audit_head_refuse_change();
DROP TRIGGER IF EXISTS audit_head_no_truncate ON audit_auditchainhead;
DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_refuse_truncate();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_entry_canonical")]

    operations = [migrations.RunPython(forwards, backwards)]

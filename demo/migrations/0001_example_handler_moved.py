"""The example handler moved from workers/examples.py to demo/examples.py: triggers that name
it by its old dotted path (the demo's own `demo-notify-shipped`, in a demo database made
before the move) are pointed at the new one. Only the handler path changes."""

from django.db import migrations

OLD = "workers.examples.notify_shipped"
NEW = "demo.examples.notify_shipped"


def _repoint(apps, *, old: str, new: str) -> None:
    apps.get_model("workers", "Trigger").objects.filter(handler=old).update(handler=new)


def forwards(apps, schema_editor):
    _repoint(apps, old=OLD, new=NEW)


def backwards(apps, schema_editor):
    _repoint(apps, old=NEW, new=OLD)


class Migration(migrations.Migration):
    dependencies = [("workers", "0002_invocation_started_index")]

    operations = [migrations.RunPython(forwards, backwards)]

from django.core.management.base import BaseCommand

from audit.chain import audit_verify


class Command(BaseCommand):
    help = "Walk the audit log's hash chain; exit 0 when it is intact, 1 naming each break."

    def handle(self, *args, **options):
        checked, breaks = audit_verify()
        if not breaks:
            self.stdout.write(f"Audit chain intact: {checked} entries.")
            return
        for found in breaks:
            self.stderr.write(found.problem)
        self.stderr.write(f"Audit chain broken: {len(breaks)} problem(s) in {checked} entries.")
        raise SystemExit(1)

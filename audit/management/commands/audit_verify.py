from django.core.management.base import BaseCommand

from audit.chain import audit_verify, chain_tail


class Command(BaseCommand):
    help = ("Walk the audit log's hash chain; exit 0 when it is intact, 1 naming each break. Prints the last "
            "entry's id and hash: keep them elsewhere, to notice the whole log rewritten or emptied.")

    def handle(self, *args, **options):
        checked, breaks = audit_verify()
        last_id, last_hash = chain_tail()
        if not breaks:
            self.stdout.write(f"Audit chain intact: {checked} entries; the last, #{last_id}, has hash {last_hash}.")
            return
        for found in breaks:
            self.stderr.write(found.problem)
        self.stderr.write(f"Audit chain broken: {len(breaks)} problem(s) in {checked} entries; "
                          f"the last, #{last_id}, has hash {last_hash}.")
        raise SystemExit(1)

"""The audit log: AuditEntry rows, appended only by audit.chain.audit_record, each holding the
hash of the entry before it; AuditChainHead, the one row an append locks."""

from django.db import models


class AuditEntry(models.Model):
    # Assigned by audit_record as the head's last_id + 1, never by the sequence: the ids of a
    # whole chain are 1..N without holes, so a deleted entry shows as a hole.
    id = models.BigIntegerField(primary_key=True)
    at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150, blank=True, db_index=True, help_text="Username; empty for Shardwatch itself.")
    actor_id = models.IntegerField(null=True, blank=True)
    address = models.CharField(max_length=45, blank=True, help_text="REMOTE_ADDR, or the first X-Forwarded-For hop behind a trusted proxy.")
    action = models.CharField(max_length=64, db_index=True, help_text='"<app_label>.<model>.<verb>", such as workers.trigger.enable.')
    target_type = models.CharField(max_length=64, blank=True, help_text='"<app_label>.<model>"')
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(default=dict, blank=True, help_text="The changed fields' values before; secrets masked.")
    after = models.JSONField(default=dict, blank=True, help_text="The changed fields' values after; secrets masked.")
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    # The exact text `hash` is taken over (audit.chain.entry_canonical), kept because jsonb gives
    # back some numbers in another spelling (1e+20 as 100000000000000000000), so the columns
    # alone cannot always be hashed again. Empty on entries written before it was kept.
    canonical = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"#{self.pk} {self.action} by {self.actor or 'Shardwatch'}"


class AuditChainHead(models.Model):
    """One row (pk 1): the last entry's id and hash. audit_record locks it (SELECT ... FOR
    UPDATE) so that two writers never append after the same entry."""

    id = models.SmallIntegerField(primary_key=True, default=1)
    last_id = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

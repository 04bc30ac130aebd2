import hashlib
import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from streams import aws
from streams.leases import LeaseQuerySet
from streams.masking import Masking, MaskingError, rule_path_parse


def sequence_key(sequence_number: str) -> str:
    """A string that sorts like the decimal sequence number it encodes.

    Sequence numbers are decimal strings of varying length (21 to 40+ digits); zero-padding
    to a fixed width makes string order equal numeric order on every database.
    """
    digits = sequence_number.lstrip("0") or "0"
    if not digits.isdigit() or len(digits) > SEQUENCE_KEY_WIDTH:
        raise ValueError(f"not a stream sequence number: {sequence_number!r}")
    return digits.rjust(SEQUENCE_KEY_WIDTH, "0")


SEQUENCE_KEY_WIDTH = 64
PARTITION_KEY_INDEXED = 512


def digest_item_key(item_key: str) -> str:
    # surrogatepass: a key holding a lone surrogate (no DynamoDB string does, but a record kept
    # as received may) still has a digest; every other text encodes as plain UTF-8.
    return hashlib.sha1(item_key.encode("utf-8", "surrogatepass")).hexdigest()


class StreamSource(models.Model):
    """A DynamoDB table whose stream Shardwatch watches."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        TABLE_MISSING = "table_missing", "Table missing"
        STREAM_DISABLED = "stream_disabled", "Stream disabled"
        STREAM_GONE = "stream_gone", "Stream gone"
        UNREACHABLE = "unreachable", "Endpoint unreachable"
        ERROR = "error", "Error"

        @classmethod
        def after_failure(cls, failure: aws.Failure) -> "StreamSource.Status":
            """The status a source shows after a DynamoDB or Streams call failed with
            `failure` (streams.aws.classify). NOT_FOUND is the table's: a stream or shard that
            is gone is marked by stream_mark_gone instead, before this is asked."""
            return _STATUS_AFTER_FAILURE.get(failure, cls.ERROR)

    class StartPosition(models.TextChoices):
        TRIM_HORIZON = "TRIM_HORIZON", "Trim horizon (everything still in the stream)"
        LATEST = "LATEST", "Latest (only changes from now on)"

    class ViewType(models.TextChoices):
        KEYS_ONLY = "KEYS_ONLY", "Keys only"
        NEW_IMAGE = "NEW_IMAGE", "New image"
        OLD_IMAGE = "OLD_IMAGE", "Old image"
        NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES", "New and old images"

    table_name = models.CharField(max_length=255)
    region = models.CharField(max_length=32)
    endpoint_url = models.URLField(
        blank=True,
        help_text="Leave empty for AWS, or for the endpoint in AWS_ENDPOINT_URL_DYNAMODB(_STREAMS).",
    )
    stream_arn = models.CharField(max_length=512, blank=True, help_text="Resolved with DescribeTable.")
    view_type = models.CharField(max_length=32, choices=ViewType.choices, blank=True)
    key_schema = models.JSONField(default=list, blank=True, help_text="Key attribute names, hash key first.")
    enabled = models.BooleanField(default=True)
    start_position = models.CharField(max_length=16, choices=StartPosition.choices, default=StartPosition.TRIM_HORIZON)
    retention_days = models.PositiveIntegerField(default=settings.SHARDWATCH_DEFAULT_RETENTION_DAYS)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.PENDING)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_discovered_at = models.DateTimeField(null=True, blank=True)
    # How far down ApproximateCreationDateTime is rounded (streams.lag): AWS's 1 s, or 60 once
    # the source's records showed rounding to the minute (DynamoDB Local's ARN says so too).
    record_time_step_s = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["table_name", "region", "endpoint_url"], name="unique_source_table"),
        ]
        ordering = ["table_name"]

    def __str__(self):
        return f"{self.table_name} ({self.region})"

    @property
    def group_name(self) -> str:
        return f"source-{self.pk}"


# Every other failure (denied, throttled, anything unknown) shows as an error with AWS's message.
_STATUS_AFTER_FAILURE = {
    aws.Failure.NOT_FOUND: StreamSource.Status.TABLE_MISSING,
    aws.Failure.UNREACHABLE: StreamSource.Status.UNREACHABLE,
}


class StreamQuerySet(models.QuerySet):
    def for_discovery(self):
        """Streams that may still have shards to find or read."""
        return self.exclude(state=Stream.State.DRAINED)


class Stream(models.Model):
    """One stream ARN of a source. Disabling and re-enabling a table's stream gives a new ARN;
    the older stream is read to its end before the newer one starts."""

    class State(models.TextChoices):
        CURRENT = "current", "Current"
        SUPERSEDED = "superseded", "Superseded (reading to its end)"
        DRAINED = "drained", "Drained"

    class MappingsLookup(models.TextChoices):
        """How the stream's Lambda event source mappings were last looked up (streams.consumers).
        The labels of the states that leave them unknown say why, as the page shows them."""

        PENDING = "", "unknown: not looked up yet"
        LISTED = "listed", "listed"
        NO_LAMBDA = "no_lambda", "not looked up: DynamoDB Local has no Lambda"
        DENIED = "denied", "unknown: the identity lacks lambda:ListEventSourceMappings"
        UNREACHABLE = "unreachable", "unknown: the Lambda endpoint could not be reached"
        FAILED = "failed", "unknown: ListEventSourceMappings failed"

    source = models.ForeignKey(StreamSource, on_delete=models.CASCADE, related_name="streams")
    arn = models.CharField(max_length=512)
    label = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.CURRENT)
    discovered_at = models.DateTimeField(default=timezone.now)
    # The other consumers Lambda knows of: ListEventSourceMappings for this ARN, found by
    # discovery every SHARDWATCH_CONSUMERS_INTERVAL_S. Each mapping is {"uuid", "function_arn",
    # "state", "batch_size", "starting_position" ("" when not given), "last_modified" (ISO 8601)}.
    # Empty unless the lookup is LISTED.
    lambda_mappings = models.JSONField(default=list, blank=True)
    lambda_mappings_lookup = models.CharField(
        max_length=16, choices=MappingsLookup.choices, default=MappingsLookup.PENDING, blank=True
    )
    lambda_mappings_error = models.TextField(blank=True, help_text="AWS's error, when the lookup failed.")
    lambda_mappings_checked_at = models.DateTimeField(null=True, blank=True)

    objects = StreamQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "arn"], name="unique_stream_arn")]
        ordering = ["source", "discovered_at", "id"]

    def __str__(self):
        return self.arn


class ShardQuerySet(LeaseQuerySet):
    def readable(self):
        """Shards that may be read now: not finished, parent finished or unknown to us,
        and every older stream of the same source drained."""
        unfinished_parent = Shard.objects.filter(
            stream=models.OuterRef("stream"),
            shard_id=models.OuterRef("parent_shard_id"),
        ).exclude(state=Shard.State.FINISHED)
        older_stream_undrained = Stream.objects.filter(
            source=models.OuterRef("stream__source"),
            discovered_at__lt=models.OuterRef("stream__discovered_at"),
        ).exclude(state=Stream.State.DRAINED)
        return (
            self.exclude(state=Shard.State.FINISHED)
            .filter(stream__source__enabled=True)
            .exclude(models.Exists(unfinished_parent))
            .exclude(models.Exists(older_stream_undrained))
        )


class Shard(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"
        FINISHED = "finished", "Finished"

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="shards")
    shard_id = models.CharField(max_length=128)
    parent_shard_id = models.CharField(max_length=128, blank=True)
    starting_sequence_number = models.CharField(max_length=64, blank=True)
    ending_sequence_number = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    # Where a shard with no checkpoint starts: LATEST only for shards open when a LATEST source
    # was first seen; everything discovered later starts at its beginning, as Lambda does.
    initial_position = models.CharField(max_length=16, default="TRIM_HORIZON")
    checkpoint = models.CharField(max_length=64, blank=True, help_text="Last persisted sequence number.")
    # A LATEST position has no sequence number until the first record arrives. Until then the
    # reader keeps its newest iterator here, so a restarted reader resumes where the last one
    # was instead of skipping what was written meanwhile. Iterators expire after 15 minutes.
    resume_iterator = models.TextField(blank=True)
    resume_iterator_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=128, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set when a reader takes the shard and at each renewal of its leases (every lease/3): a
    # reader writes nothing per poll, so this says the shard was held and read at that time.
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_polled_by = models.CharField(max_length=255, blank=True, help_text="host:pid of the reader holding the shard.")
    last_record_at = models.DateTimeField(null=True, blank=True, help_text="When a poll last returned records.")
    # AWS's IteratorAge at the shard's last poll (streams.lag): the age in seconds of the newest
    # record the poll returned when it was read, 0 when it returned nothing; and when that poll
    # read it. Written with each saved batch, and for caught-up shards at lease renewal.
    iterator_age_s = models.FloatField(null=True, blank=True)
    iterator_age_at = models.DateTimeField(null=True, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    discovered_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ShardQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stream", "shard_id"], name="unique_shard")]
        indexes = [models.Index(fields=["state", "lease_expires_at"], name="shard_lease_idx")]
        ordering = ["stream", "discovered_at", "id"]

    def __str__(self):
        return self.shard_id


class Gap(models.Model):
    """Records that were lost before we read them (trimmed by the 24-hour retention, or a
    stream deleted while shards were unread). Shown on the source, never hidden."""

    source = models.ForeignKey(StreamSource, on_delete=models.CASCADE, related_name="gaps")
    shard = models.ForeignKey(Shard, on_delete=models.SET_NULL, null=True, related_name="gaps")
    after_sequence_number = models.CharField(max_length=64, blank=True)
    reason = models.TextField()
    detected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-detected_at"]


class StoredJSONField(models.JSONField):
    """JSON kept as the text it was written: PostgreSQL's json type, not jsonb.

    jsonb re-orders an object's keys and costs a conversion each time its text is read; the
    stream's images are only ever stored and read back whole, so json keeps them as the stream
    sent them, attribute order included, and trigger runners read their text as it is. (On
    SQLite every JSONField is text already.) Nothing may use jsonb operators on these columns.
    """

    def db_type(self, connection):
        return "json" if connection.vendor == "postgresql" else super().db_type(connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        if connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        # As text, which PostgreSQL takes as json without passing through jsonb.
        return None if value is None else json.dumps(value, cls=self.encoder)

    def from_db_value(self, value, expression, connection):
        if value is not None and not isinstance(value, str):
            return value  # psycopg decodes json (not jsonb) itself
        return super().from_db_value(value, expression, connection)


class MaskingRule(models.Model):
    """One path of a source's items that people without streams.view_unmasked_changerecord see
    masked (streams.masking says how paths read and what each mode shows). Stored records are
    never changed by a rule; adding, changing or deleting one takes effect on the next page,
    API call or pushed batch."""

    class Mode(models.TextChoices):
        REDACT = "redact", "Redact: show ••• (type kept)"
        HASH = "hash", "Hash: show a keyed HMAC (equal values look equal)"
        REMOVE = "remove", "Remove: leave the attribute out"

    source = models.ForeignKey(StreamSource, on_delete=models.CASCADE, related_name="masking_rules")
    path = models.CharField(
        max_length=512,
        help_text='An attribute path: customer.email, items[0].sku, order["ship to"]; * is any one level, '
                  "** any number of levels (**.ssn masks ssn anywhere); key attributes too.",
    )
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.REDACT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "path"], name="unique_masking_rule_path")]
        ordering = ["source", "path"]

    def __str__(self):
        return f"{self.path} ({self.mode})"

    def clean(self):
        try:
            segments = rule_path_parse(self.path)
        except MaskingError as exc:
            raise ValidationError({"path": str(exc)}) from None
        self.path = self.path.strip()
        key_schema = self.source.key_schema if self.source_id else []
        # Asked of the rule's own matching, so wildcards (**.pk, **.*) count as they would mask.
        alone = Masking(rules_by_source={0: ((segments, self.mode),)})
        if self.mode == self.Mode.REMOVE and any(alone.attribute_masked(source_id=0, name=name) for name in key_schema):
            raise ValidationError({"mode": "A key attribute cannot be removed: a record without its key names no "
                                           "item (it is redacted in Keys instead). Use redact or hash."})


class ChangeRecordQuerySet(models.QuerySet):
    def older_than(self, *, source_id, cutoff):
        """Records a source's retention no longer keeps."""
        return self.filter(source_id=source_id, approximate_creation_time__lt=cutoff)


class ChangeRecord(models.Model):
    class EventName(models.TextChoices):
        INSERT = "INSERT"
        MODIFY = "MODIFY"
        REMOVE = "REMOVE"

    # No single-column indexes on the two foreign keys: the composite indexes below lead with
    # them and serve every lookup by either. With both, the planner, on statistics that lag a
    # burst of new records, reads a whole shard through the shard_id index and sorts it instead
    # of walking (shard, sequence_key) in order; and every insert paid for two more indexes.
    source = models.ForeignKey(StreamSource, on_delete=models.CASCADE, related_name="records", db_index=False)
    shard = models.ForeignKey(Shard, on_delete=models.CASCADE, related_name="records", db_index=False)
    sequence_number = models.CharField(max_length=64)
    sequence_key = models.CharField(max_length=SEQUENCE_KEY_WIDTH, help_text="Zero-padded; sorts numerically.")
    event_id = models.CharField(max_length=64)
    event_name = models.CharField(max_length=8, choices=EventName.choices)
    event_version = models.CharField(max_length=8, blank=True)
    approximate_creation_time = models.DateTimeField()
    size_bytes = models.PositiveIntegerField()
    view_type = models.CharField(max_length=32)
    # Typed DynamoDB JSON as the stream gave it (B as base64), so nothing is lost; a value in a
    # shape AWS never sends is stored in AWS's shape, and the image as sent in images_as_sent.
    keys = StoredJSONField()
    old_image = StoredJSONField(null=True)
    new_image = StoredJSONField(null=True)
    item_key = models.TextField(help_text="Canonical JSON of the typed Keys, for item history.")
    # Keys may be kilobytes long, past what a B-tree index takes; the digest is what we index.
    item_hash = models.CharField(max_length=40)
    # At most PARTITION_KEY_INDEXED characters: a 2 KB binary key is 2.7 KB of base64, past the
    # size of a B-tree index entry, and an insert that fails on it would stall the shard.
    partition_key = models.TextField(blank=True, help_text="The partition key's value as text, for key filters.")
    # "\npath\n" per changed path, so "which records changed status" is a substring match
    # that works the same on PostgreSQL and SQLite.
    changed_paths = models.TextField(blank=True)
    # json, not jsonb, as the images are: a diff holds values of the images, and jsonb refuses a
    # string holding U+0000, which DynamoDB allows (streams.codec.NUL_STAND_IN). Only ever read whole.
    diff = StoredJSONField(default=list)
    diff_complete = models.BooleanField(default=True, help_text="False when the view type hides one side.")
    user_identity = models.JSONField(null=True)
    is_ttl_delete = models.BooleanField(default=False)
    received_at = models.DateTimeField(default=timezone.now)
    decode_error = models.TextField(blank=True, help_text="Set when the record could not be decoded; kept as received.")
    # Ingest stores every attribute value in the typed form AWS sends (shapes.image_reshape), so
    # handlers, the Lambda event and patterns see what they would see on AWS. The images that
    # had to change are kept here as the stream sent them, {"NewImage": {...}, ...}, for the
    # raw view; None when the stream sent AWS's shape, as it nearly always does.
    images_as_sent = StoredJSONField(null=True, blank=True)
    shape_error = models.TextField(
        blank=True, help_text="Values in no DynamoDB typed form that could not be put into one; kept as sent. One a line."
    )

    objects = ChangeRecordQuerySet.as_manager()

    class Meta:
        constraints = [
            # sequence_key is sequence_number zero-padded, so this is uniqueness per (shard, number)
            # and also the index that orders a shard's records.
            models.UniqueConstraint(fields=["shard", "sequence_key"], name="unique_record_per_shard"),
        ]
        indexes = [
            models.Index(fields=["source", "-id"], name="record_feed_idx"),
            models.Index(fields=["source", "approximate_creation_time"], name="record_time_idx"),
            models.Index(fields=["source", "item_hash", "sequence_key"], name="record_item_idx"),
            # text_pattern_ops lets PostgreSQL use the index for "key starts with" (LIKE 'x%')
            # under any collation; SQLite ignores the operator class.
            models.Index(
                fields=["partition_key", "id"], name="record_partition_key_idx", opclasses=["text_pattern_ops", ""]
            ),
        ]
        # view_unmasked_changerecord is held by Admin only: its holders may ask to see item data
        # unmasked (each time audited); everyone else always sees it masked (MaskingRule).
        permissions = [
            ("export_changerecord", "Can export change records (NDJSON, CSV)"),
            ("view_unmasked_changerecord", "Can view item data unmasked"),
        ]

    def __str__(self):
        # Never the key: the admin's history and delete pages, the audit log's target_repr and
        # log lines print this, and none of them knows masking (streams.masking).
        return f"{self.event_name} record {self.pk} @{self.sequence_number}"


"""Triggers: Lambda-compatible event source mappings that run against the persisted stream.

Setting names, ranges and defaults follow Lambda's CreateEventSourceMapping for DynamoDB
streams, so a mapping can move between Shardwatch and AWS without translation.
"""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from streams.filters import MAX_PATTERN_LENGTH
from streams.leases import LeaseQuerySet
from streams.models import SEQUENCE_KEY_WIDTH, Shard, StreamSource

# Lambda's synchronous invocation payload limit, which also caps a batch's size.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# Lambda's limit on the filter patterns of one event source mapping (FilterCriteria.Filters).
MAX_PATTERNS = 5


class Trigger(models.Model):
    class Target(models.TextChoices):
        PYTHON = "python", "Python handler"
        WEBHOOK = "webhook", "Signed webhook"
        LAMBDA = "lambda", "AWS Lambda function"

    class StartingPosition(models.TextChoices):
        TRIM_HORIZON = "TRIM_HORIZON", "TRIM_HORIZON (every stored record)"
        LATEST = "LATEST", "LATEST (records saved from now on)"

    name = models.CharField(max_length=100, unique=True)
    source = models.ForeignKey(StreamSource, on_delete=models.CASCADE, related_name="triggers")
    enabled = models.BooleanField(default=True)
    target = models.CharField(max_length=16, choices=Target.choices)
    handler = models.CharField(
        max_length=255, blank=True, help_text="Python target: dotted path to handler(event, context)."
    )
    webhook_url = models.URLField(blank=True, help_text="Webhook target: the URL the event is POSTed to.")
    # The HMAC key must be recoverable to sign requests, so it is stored encrypted with a key
    # derived from SECRET_KEY, never in clear, and shown to the user once.
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    function_name = models.CharField(
        max_length=255, blank=True, help_text="Lambda target: function name or ARN (with an optional qualifier)."
    )
    timeout_s = models.PositiveIntegerField(
        "Timeout (seconds)", default=3, validators=[MinValueValidator(1), MaxValueValidator(900)]
    )

    batch_size = models.PositiveIntegerField(
        "BatchSize", default=100, validators=[MinValueValidator(1), MaxValueValidator(10000)]
    )
    maximum_batching_window_s = models.PositiveIntegerField(
        "MaximumBatchingWindowInSeconds", default=0, validators=[MaxValueValidator(300)]
    )
    starting_position = models.CharField(
        "StartingPosition", max_length=16, choices=StartingPosition.choices, default=StartingPosition.TRIM_HORIZON
    )
    filter_patterns = models.JSONField(
        "FilterCriteria", default=list, blank=True, help_text=f"Up to {MAX_PATTERNS} event patterns, each at most {MAX_PATTERN_LENGTH} characters."
    )
    maximum_retry_attempts = models.IntegerField(
        "MaximumRetryAttempts", default=-1, validators=[MinValueValidator(-1), MaxValueValidator(10000)],
        help_text="-1 retries until the records expire.",
    )
    maximum_record_age_s = models.IntegerField(
        "MaximumRecordAgeInSeconds", default=-1, validators=[MinValueValidator(-1), MaxValueValidator(604800)],
        help_text="-1 for no limit, or 60 to 604800.",
    )
    bisect_batch_on_function_error = models.BooleanField("BisectBatchOnFunctionError", default=False)
    report_batch_item_failures = models.BooleanField(
        "FunctionResponseTypes: ReportBatchItemFailures", default=False
    )
    parallelization_factor = models.PositiveSmallIntegerField(
        "ParallelizationFactor", default=1, validators=[MinValueValidator(1), MaxValueValidator(10)]
    )
    on_failure_sqs_url = models.URLField("On-failure SQS queue URL", blank=True)
    on_failure_sns_arn = models.CharField("On-failure SNS topic ARN", max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        # Operating a trigger changes what runs, never how it is configured (change_trigger):
        # the Operator role has this and not that (dashboard/roles.py).
        permissions = [("operate_trigger", "Can enable, disable, reset, replay triggers and skip or bisect a failing batch")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(maximum_record_age_s=-1) | models.Q(maximum_record_age_s__gte=60),
                name="record_age_minus_one_or_at_least_60",
            ),
        ]

    def __str__(self):
        return self.name


class TriggerCursor(models.Model):
    """Where a trigger is in one shard. With ParallelizationFactor N a shard has N lanes, each
    taking the partition keys that hash to it, so order per key holds while lanes run at once."""

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="cursors")
    shard = models.ForeignKey(Shard, on_delete=models.CASCADE, related_name="trigger_cursors")
    lane = models.PositiveSmallIntegerField(default=0)
    # sequence_key of the last record done with (sent, filtered out or dead-lettered).
    position = models.CharField(max_length=SEQUENCE_KEY_WIDTH, blank=True)
    attempt = models.PositiveIntegerField(default=0, help_text="Retries of the batch at the position so far.")
    # After a function error with BisectBatchOnFunctionError, the next batch is this many
    # records (half the failed one); 0 means BatchSize.
    batch_limit = models.PositiveIntegerField(default=0)
    # ...and the last record of the batch that was split: both halves are sent as bisected
    # batches before reading goes back to full batches.
    bisect_end = models.CharField(max_length=SEQUENCE_KEY_WIDTH, blank=True)
    filtered_total = models.PositiveBigIntegerField(default=0, help_text="Records skipped by the filter patterns.")
    # Held by one runner at a time (streams.leases).
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the oldest stored record past `position` counts from (its ApproximateCreationDateTime,
    # or its received_at where the source rounds record times; streams.lag), NULL when the
    # cursor is caught up: kept on write (workers.cursors) so that a trigger's iterator age is
    # read without scanning records.
    pending_since = models.DateTimeField(null=True, blank=True)

    objects = LeaseQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trigger", "shard", "lane"], name="unique_trigger_cursor")]
        # Only cursors that are behind: a scrape reads the oldest per trigger from these.
        indexes = [
            models.Index(
                fields=["trigger", "pending_since"], name="cursor_pending_idx",
                condition=models.Q(pending_since__isnull=False),
            )
        ]


class Outcome(models.TextChoices):
    """How an invocation went: what a target answered (workers.targets) and what the runner
    recorded of it. Values are the strings an Invocation stores."""

    SUCCESS = "success", "Success"
    FUNCTION_ERROR = "function_error", "Function error"
    TIMEOUT = "timeout", "Timeout"
    PARTIAL_FAILURE = "partial_failure", "Partial failure"
    DISCARDED = "discarded", "Discarded"
    # Never stored: the Lambda API itself answered 429 or 5xx, so the function was not reached.
    # Lambda's event source mapping retries that without counting an attempt; the runner
    # records it as a function error and retries.
    THROTTLED = "throttled", "Throttled"


# The outcomes that count as failed, in every error rate: the Triggers page's and charts'
# (workers.selectors.trigger_errors, dashboard.charts), the built-in alert's
# (workers.selectors.trigger_outcomes_since) and rules.yml's ShardwatchTriggerErrorRateHigh,
# which tests/config/test_prometheus.py holds to this set. Every outcome but success: a batch
# discarded for its age (MaximumRecordAgeInSeconds) was not processed either.
FAILED_OUTCOMES = frozenset(outcome.value for outcome in Outcome if outcome is not Outcome.SUCCESS)

# What an Invocation can record (THROTTLED never is), as (value, label) choices.
INVOCATION_OUTCOMES = [(outcome.value, outcome.label) for outcome in Outcome if outcome is not Outcome.THROTTLED]


class Invocation(models.Model):
    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="invocations")
    shard = models.ForeignKey(Shard, on_delete=models.SET_NULL, null=True, related_name="invocations")
    lane = models.PositiveSmallIntegerField(default=0)
    first_sequence_number = models.CharField(max_length=64)
    last_sequence_number = models.CharField(max_length=64)
    record_count = models.PositiveIntegerField()
    filtered_count = models.PositiveIntegerField(default=0)
    record_ids = models.JSONField(default=list, help_text="The records sent, in order.")
    attempt = models.PositiveIntegerField(default=0)
    from_bisect = models.BooleanField(default=False)
    # Sent by an operator's replay or dead-letter retry (workers.operations), beside the
    # cursors: such an invocation is never a cursor's batch, though it has a shard and a lane.
    replay = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.FloatField(default=0)
    outcome = models.CharField(max_length=16, choices=INVOCATION_OUTCOMES)
    error_type = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    response_body = models.TextField(blank=True, help_text="Truncated to 64 KB.")

    class Meta:
        indexes = [
            models.Index(fields=["trigger", "-started_at"], name="invocation_timeline_idx"),
            # The timeline of all triggers (newest first) and the trigger list's last-hour counts
            # range over started_at without a trigger.
            models.Index(fields=["-started_at"], name="invocation_started_idx"),
        ]
        ordering = ["-started_at", "-id"]


class DeadLetter(models.Model):
    """Records a trigger gave up on, with the reason: Shardwatch's in-app on-failure destination."""

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="dead_letters")
    shard = models.ForeignKey(Shard, on_delete=models.SET_NULL, null=True, related_name="dead_letters")
    invocation = models.ForeignKey(Invocation, on_delete=models.SET_NULL, null=True, related_name="dead_letters")
    first_sequence_number = models.CharField(max_length=64)
    last_sequence_number = models.CharField(max_length=64)
    record_ids = models.JSONField(default=list)
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    retried_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("retry_deadletter", "Can retry dead-letter entries")]

"""Alerts built in: rules that watch sources, shards, triggers and workers, the state of each
alert, and the notifications sent to channels.

Invariants:
- An AlertState is one (rule, subject) pair: `subject` is "source:<id>", "shard:<id>",
  "trigger:<id>", "cursor:<id>" or "role:<worker|reader>" (no worker alive).
  It moves OK -> PENDING (the condition holds, not yet for the rule's duration) -> FIRING ->
  RESOLVED, and from RESOLVED back to PENDING or OK. Every change of `status`, and every
  reminder of a firing alert, is claimed by one conditional UPDATE on `version` that must
  change exactly one row (alerts.evaluation), so two evaluators never both act on one.
- A firing or resolving transition, and each reminder after the rule's repeat interval, is
  stored as an AlertTransition in the same transaction as the claim, with one Delivery per
  enabled channel of the rule, unless nobody is to be told: a silenced alert still records
  its transitions, with `silenced` set and no deliveries. `last_notified_at` is set only by a
  notified firing or reminder, so one that fired while silenced notifies "fired" once the
  silence ends, and a resolve is notified exactly when its firing was (even while silenced).
- A Delivery is sent by whoever claims it (a conditional UPDATE that moves `next_attempt_at`
  past the send's timeout); a failed send stores its error and the time of the next attempt,
  with exponential backoff, until MAX_ATTEMPTS. One channel's failure never touches another's
  delivery or the evaluation.
- A channel's last word on an alert is its newest transition: a transition's deliveries are
  made in the same transaction that marks the alert's older deliveries still pending to the
  same channel SUPERSEDED (never sent), so a fired notice in backoff cannot land after the
  resolve that followed it. One already claimed (in flight) is left to its sender, and the
  new delivery's first attempt waits for that claim to end; an HTTP send is cut well inside
  its claim (alerts.delivery.SEND_DEADLINE_S), so no sender ever finds it still in flight.
- Rule.clean refuses a threshold that a healthy system at rest crosses (no worker alive
  under three heartbeats, source lag within an idle reader's, a stuck shard within a poll's
  backoff and a lease handover, a trigger age within its batching window and dispatch), as
  such a rule would fire for good or flap. Rules made in code skip clean; keep them above.
- A rule outlives the source or trigger it watches: their deletion disables it
  (rules_disable_watching) and empties the field, and a disabled rule's firing alerts resolve
  at the next evaluation, notified as their firing was.
- A webhook channel's secret is stored encrypted exactly as a webhook trigger's
  (workers.targets.webhook), and signs the body the same way.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone

from streams.lag import lag_idle_s
from streams.models import StreamSource
from workers.models import Trigger


class Channel(models.Model):
    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook (JSON, signed like trigger webhooks)"
        SLACK = "slack", "Slack-compatible incoming webhook"
        EMAIL = "email", "Email"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    url = models.URLField(blank=True, help_text="Webhook and Slack: the URL the alert is POSTed to.")
    # Recoverable to sign requests, so encrypted with a key derived from SECRET_KEY (the trigger
    # webhooks' scheme), and shown to the user once.
    secret_encrypted = models.TextField(blank=True, editable=False)
    email_to = models.TextField(blank=True, help_text="Email: addresses, separated by commas or new lines.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def addresses(self) -> list[str]:
        return [part.strip() for part in self.email_to.replace("\n", ",").split(",") if part.strip()]

    def clean(self):
        if self.kind in (self.Kind.WEBHOOK, self.Kind.SLACK) and not self.url:
            raise ValidationError({"url": f"A {self.get_kind_display().lower()} channel needs a URL."})
        if self.kind == self.Kind.EMAIL:
            if not self.addresses:
                raise ValidationError({"email_to": "An email channel needs at least one address."})
            for address in self.addresses:
                try:
                    validate_email(address)
                except ValidationError:
                    raise ValidationError({"email_to": f"{address!r} is not an email address."}) from None


class Rule(models.Model):
    class Condition(models.TextChoices):
        SOURCE_INACTIVE = "source_inactive", "Source not active for N minutes"
        SOURCE_LAG = "source_lag", "Source lag above N seconds"
        GAP = "gap", "Gaps recorded: more than N in the window"
        SHARD_STUCK = "shard_stuck", "Stuck shard: leased, records waiting, checkpoint still for N minutes"
        TRIGGER_AGE = "trigger_age", "Trigger's oldest unprocessed record older than N seconds"
        TRIGGER_ERROR_RATE = "trigger_error_rate", "Trigger error rate above N % over the window"
        DEAD_LETTERS = "dead_letters", "Dead letters added: more than N in the window"
        POISON_RECORD = "poison_record", "Poison record: the same batch retried N times"
        NO_WORKER = "no_worker", "No worker alive: no heartbeat for N seconds"

    name = models.CharField(max_length=100, unique=True)
    condition = models.CharField(max_length=32, choices=Condition.choices)
    # SET_NULL, not CASCADE: deleting the source or trigger disables the rule first
    # (rules_disable_watching), so its firing alerts resolve with a notification, which a rule
    # deleted with its states could never send.
    source = models.ForeignKey(
        StreamSource, on_delete=models.SET_NULL, null=True, blank=True, related_name="alert_rules",
        help_text="Source conditions: the source watched; empty watches every enabled source.",
    )
    trigger = models.ForeignKey(
        Trigger, on_delete=models.SET_NULL, null=True, blank=True, related_name="alert_rules",
        help_text="Trigger conditions: the trigger watched (required).",
    )
    threshold = models.FloatField(
        default=0, help_text="N in the condition: minutes, seconds, a count, a percentage or retries, as it says."
    )
    duration_s = models.PositiveIntegerField(
        "Duration (seconds)", default=0, help_text="How long the condition must hold before the alert fires."
    )
    window_s = models.PositiveIntegerField(
        "Window (seconds)", default=300, help_text="Error rate, gaps and dead letters: the time looked back over."
    )
    repeat_interval_s = models.PositiveIntegerField(
        "Repeat interval (seconds)", default=3600, help_text="A firing alert notifies again after this; 0 never."
    )
    channels = models.ManyToManyField(Channel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    SOURCE_CONDITIONS = {Condition.SOURCE_INACTIVE, Condition.SOURCE_LAG, Condition.GAP, Condition.SHARD_STUCK}
    TRIGGER_CONDITIONS = {
        Condition.TRIGGER_AGE, Condition.TRIGGER_ERROR_RATE, Condition.DEAD_LETTERS, Condition.POISON_RECORD
    }

    def clean(self):
        errors = {}
        if self.condition in self.TRIGGER_CONDITIONS:
            if self.trigger_id is None:
                errors["trigger"] = f"“{self.get_condition_display()}” watches a trigger: choose one."
            if self.source_id is not None:
                errors["source"] = "A trigger condition watches its trigger's source already; leave this empty."
        elif self.condition in self.SOURCE_CONDITIONS:
            if self.trigger_id is not None:
                errors["trigger"] = "A source condition watches sources, not triggers; leave this empty."
        elif self.condition == self.Condition.NO_WORKER and (self.source_id or self.trigger_id):
            errors["source"] = "“No worker alive” watches every worker; leave source and trigger empty."
        if self.threshold is not None and self.threshold < 0:
            errors["threshold"] = "The threshold cannot be negative."
        elif self.condition == self.Condition.TRIGGER_ERROR_RATE and self.threshold is not None and self.threshold >= 100:
            errors["threshold"] = "An error rate is above N % for N from 0 to 99.9; 100 could never be exceeded."
        elif self.condition == self.Condition.POISON_RECORD and self.threshold is not None and self.threshold < 1:
            errors["threshold"] = "A poison record is a batch retried N times, N at least 1."
        elif self.threshold is not None and (floor := self._threshold_floor()) is not None:
            errors["threshold"] = floor
        if self.condition in (self.Condition.TRIGGER_ERROR_RATE, self.Condition.GAP, self.Condition.DEAD_LETTERS):
            if not self.window_s:
                errors["window_s"] = "This condition looks back over a window; give it in seconds (at least 1)."
        if errors:
            raise ValidationError(errors)

    def _threshold_floor(self) -> str | None:
        """Why the threshold is at or below what a healthy system shows at rest, which would
        make the rule fire for good or flap; None when it is above. The floors follow the
        settings that pace the readers, triggers and heartbeats."""
        threshold, c = self.threshold, self.Condition
        if self.condition == c.NO_WORKER:
            floor = 3 * settings.SHARDWATCH_HEARTBEAT_S
            if threshold < floor:
                return (f"A worker heartbeats every {settings.SHARDWATCH_HEARTBEAT_S:g} s "
                        f"(SHARDWATCH_HEARTBEAT_S), so a shorter silence is no sign of death: give at least "
                        f"{floor:g} s (three heartbeats).")
        elif self.condition == c.SOURCE_LAG:
            floor = lag_idle_s()
            if threshold <= floor:
                return (f"An idle, healthy reader shows up to {floor:g} s of lag (a lease renewal every "
                        f"SHARDWATCH_LEASE_S / 3, SHARDWATCH_IDLE_POLL_INTERVAL_S and a second of rounding), "
                        f"so this would always fire: give more than {floor:g} s.")
        elif self.condition == c.SHARD_STUCK:
            # One failed poll backs off up to SHARDWATCH_MAX_BACKOFF_S, and a shard whose reader
            # died is taken over after SHARDWATCH_LEASE_S: neither is stuck.
            floor_s = settings.SHARDWATCH_MAX_BACKOFF_S + settings.SHARDWATCH_LEASE_S
            if threshold * 60 <= floor_s:
                return (f"A healthy reader may leave a checkpoint still for {floor_s:g} s (a poll's backoff, "
                        f"SHARDWATCH_MAX_BACKOFF_S, and a lease handover, SHARDWATCH_LEASE_S): give more than "
                        f"{floor_s / 60:.2g} minutes.")
        elif self.condition == c.TRIGGER_AGE and self.trigger is not None:
            # A trigger holds records for its batching window on purpose, and dispatch looks for
            # work every SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S.
            floor = self.trigger.maximum_batching_window_s + settings.SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S
            if threshold <= floor:
                return (f"A healthy trigger keeps records waiting up to {floor:g} s (its "
                        f"MaximumBatchingWindowInSeconds plus SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S), so this "
                        f"would fire on every batch: give more than {floor:g} s.")
        return None


def rules_disable_watching(*, source_id: int | None = None, trigger_id: int | None = None) -> int:
    """Disable the rules that watch the source or trigger about to be deleted; returns how
    many. The next evaluation resolves their alerts (alerts.evaluation)."""
    rules = Rule.objects.filter(source_id=source_id) if source_id is not None else Rule.objects.filter(trigger_id=trigger_id)
    return rules.update(enabled=False)


@receiver(pre_delete, sender=StreamSource)
def _source_deleting(sender, instance, **kwargs):
    rules_disable_watching(source_id=instance.pk)


@receiver(pre_delete, sender=Trigger)
def _trigger_deleting(sender, instance, **kwargs):
    rules_disable_watching(trigger_id=instance.pk)


# What a link of a finding's details ({"links": {key: url}}, alerts.conditions) reads as on the
# Alerts page and in email. The keys stay as they are in the webhook's JSON, for programs.
LINK_LABELS = {
    "streams": "Streams",
    "triggers": "Triggers",
    "timeline": "Invocation timeline",
    "dead_letters": "Dead letters",
    "batch": "Skip or bisect the batch",
    "record": "The batch's first record",
    "invocation": "The last invocation",
}


def details_links(*, details: dict) -> list[tuple[str, str]]:
    """The links of a finding's `details` as (label, url) pairs, in their order, labelled from
    LINK_LABELS (a key missing there reads as itself in words: "some_key" -> "Some key")."""
    return [(LINK_LABELS.get(key, key.replace("_", " ").capitalize()), url)
            for key, url in (details or {}).get("links", {}).items()]


class AlertState(models.Model):
    class Status(models.TextChoices):
        OK = "ok", "OK"
        PENDING = "pending", "Pending (holding, not yet for the duration)"
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="states")
    subject = models.CharField(max_length=64, blank=True)
    subject_label = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK)
    # Bumped by every claimed change: the conditional UPDATEs compare it.
    version = models.PositiveBigIntegerField(default=0)
    # When the condition was first seen holding in the current run of it; None while it does not.
    holding_since = models.DateTimeField(null=True, blank=True)
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    silenced_until = models.DateTimeField(null=True, blank=True)
    summary = models.TextField(blank=True, help_text="What the last evaluation found, in words.")
    details = models.JSONField(default=dict, blank=True, help_text="Figures and links of the last evaluation.")
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "subject"], name="unique_alert_state")]
        indexes = [models.Index(fields=["status"], name="alert_state_status")]
        permissions = [("silence_alertstate", "Can silence alerts and lift silences")]

    def __str__(self):
        return f"{self.rule} {self.subject_label or self.subject}".strip()

    def silenced(self, *, now) -> bool:
        return self.silenced_until is not None and self.silenced_until > now

    @property
    def links(self) -> list[tuple[str, str]]:
        """details_links of the last evaluation's details, for templates."""
        return details_links(details=self.details)


class AlertTransition(models.Model):
    class Kind(models.TextChoices):
        FIRED = "fired", "Fired"
        REPEATED = "repeated", "Still firing (repeat)"
        RESOLVED = "resolved", "Resolved"

    state = models.ForeignKey(AlertState, on_delete=models.CASCADE, related_name="transitions")
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="transitions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    at = models.DateTimeField(default=timezone.now)
    summary = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    silenced = models.BooleanField(default=False, help_text="Recorded while silenced: nobody was notified.")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["-at"], name="alert_transition_at")]


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (gave up)"
        SUPERSEDED = "superseded", "Superseded (a newer notification of the alert replaced it)"

    MAX_ATTEMPTS = 8

    transition = models.ForeignKey(AlertTransition, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]

"""Setting the demo up: waiting for DynamoDB Local, the demo table with its stream, the
source that watches it with a few masking rules, the example trigger on it and an alert rule on that. Each step is
idempotent, so a restarted demo finds what it made before and adds nothing twice.
"""

import logging
import threading
import time

import kombu.exceptions
from django.db import transaction

from alerts.models import Channel, Rule

from streams import aws
from streams.models import MaskingRule, StreamSource
from streams.sources import source_add
from streams.tasks import discover_source
from workers.models import Trigger
from workers.targets.webhook import webhook_secret_new

log = logging.getLogger(__name__)

DEFAULT_TABLE = "demo-orders"


def dynamodb_wait(*, client, timeout_s: float, stop: threading.Event) -> bool:
    """Wait until DynamoDB answers. False if it did not within timeout_s, or we were stopped."""
    deadline = time.monotonic() + timeout_s
    announced = False
    while not stop.is_set():
        try:
            client.list_tables(Limit=1)
            return True
        except aws.AWS_ERRORS as exc:
            # A starting DynamoDB Local may accept connections before it serves requests.
            if aws.classify(exc) not in (aws.Failure.UNREACHABLE, aws.Failure.THROTTLED):
                raise
        if time.monotonic() >= deadline:
            return False
        if not announced:
            log.info("Waiting up to %.0f s for DynamoDB at %s", timeout_s, client.meta.endpoint_url)
            announced = True
        stop.wait(0.5)
    return False


def table_ensure(*, client, table: str) -> bool:
    """Create the demo table with a NEW_AND_OLD_IMAGES stream unless it exists. True if created."""
    try:
        client.describe_table(TableName=table)
        return False
    except aws.AWS_ERRORS as exc:
        if aws.classify(exc) is not aws.Failure.NOT_FOUND:
            raise
    try:
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
    except aws.AWS_ERRORS as exc:
        # Two writers started at once: the other one created it.
        if getattr(exc, "response", {}).get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        return False
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return True


def source_ensure(*, table: str, region: str) -> tuple[StreamSource, bool]:
    """Watch the demo table unless it is watched already. True if it was added now.

    The endpoint stays empty, so web and workers reach the table through
    AWS_ENDPOINT_URL_DYNAMODB(_STREAMS) as any deployment would.
    """
    existing = StreamSource.objects.filter(table_name=table, region=region, endpoint_url="").first()
    if existing is not None:
        return existing, False
    source = source_add(table_name=table, region=region)
    transaction.on_commit(lambda: _discovery_queue(source))
    return source, True


def _discovery_queue(source: StreamSource) -> None:
    try:
        discover_source.delay(source.pk)
    except kombu.exceptions.OperationalError as exc:
        # The source is saved; only queueing its first discovery failed (Redis not up yet).
        # Beat's periodic discovery picks it up, so the writer need not die for this.
        log.warning("Added %s, but could not queue its discovery (%s); beat will discover it.", source.table_name, exc)


# One rule of each mode (streams.masking) on what demo/traffic.py writes, so that the demo's
# pages show masked values and an Admin's "Show unmasked": the email redacted (•••), the name and
# the card's last four digits hashed (equal values still look equal across orders), the postal
# code removed.
DEMO_MASKING_RULES = (
    ("customer.email", MaskingRule.Mode.REDACT),
    ("customer.name", MaskingRule.Mode.HASH),
    ("payment.last4", MaskingRule.Mode.HASH),
    ("customer.address.zip", MaskingRule.Mode.REMOVE),
)


def masking_ensure(*, source: StreamSource) -> int:
    """The demo's masking rules (DEMO_MASKING_RULES) on `source`, unless it has masking rules
    already: rules someone edited or deleted in the admin stay as they left them. Returns how
    many rules were added now."""
    with transaction.atomic():
        # Locks the source, so that two writers started at once add the rules once.
        StreamSource.objects.select_for_update().get(pk=source.pk)
        if MaskingRule.objects.filter(source=source).exists():
            return 0
        for path, mode in DEMO_MASKING_RULES:
            MaskingRule.objects.create(source=source, path=path, mode=mode)
    return len(DEMO_MASKING_RULES)


# The example handler's dotted path. Until it moved to the demo app it was
# workers.examples.notify_shipped; demo/migrations/0001 points triggers that name it here.
EXAMPLE_HANDLER = "demo.examples.notify_shipped"
DEMO_TRIGGER = "demo-notify-shipped"


def trigger_ensure(*, source: StreamSource) -> bool:
    """The demo's example trigger on its table: orders that become SHIPPED go to a Python
    handler. True if it was added now."""
    _, created = Trigger.objects.get_or_create(
        name=DEMO_TRIGGER,
        defaults={
            "source": source,
            "target": Trigger.Target.PYTHON,
            "handler": EXAMPLE_HANDLER,
            "batch_size": 10,
            "maximum_retry_attempts": 2,
            "bisect_batch_on_function_error": True,
            "report_batch_item_failures": True,
            "filter_patterns": ['{"eventName":["MODIFY"],"dynamodb":{"NewImage":{"status":{"S":["SHIPPED"]}}}}'],
        },
    )
    return created


DEMO_ALERT_CHANNEL = "demo-console"
DEMO_ALERT_RULE = "demo-notify-shipped dead letters"


def alert_ensure(*, receiver_url: str) -> bool:
    """The demo's alert: a rule on the example trigger, "dead letters added" (a shipped order
    without tracking is retried twice, then given up on), sending to a webhook channel that
    `manage.py demo_alert_receiver` serves and prints. The channel's URL follows `receiver_url`
    on every run (the port may change). True if the rule was added now."""
    trigger = Trigger.objects.filter(name=DEMO_TRIGGER).first()
    if trigger is None:
        return False
    channel = Channel.objects.filter(name=DEMO_ALERT_CHANNEL).first()
    if channel is None:
        _, encrypted = webhook_secret_new()
        channel = Channel.objects.create(name=DEMO_ALERT_CHANNEL, kind=Channel.Kind.WEBHOOK, url=receiver_url,
                                         secret_encrypted=encrypted)
    elif channel.url != receiver_url:
        Channel.objects.filter(pk=channel.pk).update(url=receiver_url)
    rule, created = Rule.objects.get_or_create(
        name=DEMO_ALERT_RULE,
        defaults={"condition": Rule.Condition.DEAD_LETTERS, "trigger": trigger, "threshold": 0, "window_s": 600,
                  "repeat_interval_s": 1800},
    )
    if created:
        rule.channels.set([channel])
    return created

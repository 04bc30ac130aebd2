"""`manage.py demo_writer`: orders-like traffic for the demo table (demo/traffic.py), and with
--create the table, its source with its masking rules and the example trigger first (demo/provision.py)."""

import os
import random
import secrets
import signal
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from demo.provision import (
    DEFAULT_TABLE,
    DEMO_MASKING_RULES,
    DEMO_ALERT_RULE,
    DEMO_TRIGGER,
    alert_ensure,
    dynamodb_wait,
    masking_ensure,
    source_ensure,
    table_ensure,
    trigger_ensure,
)
from demo.traffic import UNTRACKED_EVERY_S, UNTRACKED_FIRST_S, counts_summary, demo_run, state_load
from streams import aws
from streams.sources import SourceError


def alert_receiver_url() -> str:
    """Where `manage.py demo_alert_receiver` listens (DEMO_ALERT_PORT, as demo.sh sets it)."""
    return f"http://127.0.0.1:{os.environ.get('DEMO_ALERT_PORT', '8766')}/alerts"


class Command(BaseCommand):
    help = (
        "Write orders-like demo traffic to a DynamoDB table (endpoint from AWS_ENDPOINT_URL_DYNAMODB). "
        "With --create, also create the table and watch its stream. Stops on Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser):
        parser.add_argument("--table", default=DEFAULT_TABLE)
        parser.add_argument("--rate", type=float, default=5.0, help="Writes a second (default 5).")
        parser.add_argument("--count", type=int, help="Stop after this many writes (default: run until stopped).")
        parser.add_argument("--create", action="store_true", help="Create the table and add it as a source.")
        parser.add_argument("--seed", type=int, help="Seed for reproducible traffic (default: random, printed).")
        parser.add_argument("--wait", type=float, default=60.0, help="Seconds to wait for DynamoDB (default 60).")

    def handle(self, *args, table, rate, count, create, seed, wait, **options):
        if not 0 < rate <= 1000:
            raise CommandError("--rate must be above 0 and at most 1000.")
        if count is not None and count < 0:
            raise CommandError("--count must be 0 or more.")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        seed = secrets.randbelow(2**32) if seed is None else seed
        client = aws.dynamodb_client(region=region)
        stop = threading.Event()

        def _stop(signum, frame):
            stop.set()

        previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if create:
                self._create(client=client, table=table, region=region, wait=wait, stop=stop)
                if stop.is_set():
                    return
            # The loop below never touches the database; do not hold a connection for hours.
            # A connection inside a caller's transaction (a test's) belongs to the caller.
            for connection in connections.all(initialized_only=True):
                if not connection.in_atomic_block:
                    connection.close()
            state = state_load(client=client, table=table)
            self.stdout.write(
                f"Writing to {table} at {client.meta.endpoint_url}, about {rate:g}/s, seed {seed}; "
                f"{len(state.orders)} orders in flight from earlier runs."
            )
            self.stdout.write(
                f"In {UNTRACKED_FIRST_S} s, then every {UNTRACKED_EVERY_S // 60} minutes, an order ships without tracking: "
                f"the example trigger {DEMO_TRIGGER} fails on it, retries it and gives it up to the dead-letter list, "
                f"so the alert rule {DEMO_ALERT_RULE!r} fires, and resolves once its window passes without another."
            )
            counts = demo_run(
                client=client, table=table, rng=random.Random(seed), state=state, rate=rate, count=count, stop=stop
            )
            self.stdout.write(f"Stopped. Writes: {counts_summary(counts)}")
        except aws.AWS_ERRORS as exc:
            raise CommandError(f"DynamoDB at {client.meta.endpoint_url}, table {table}: {aws.describe(exc)}") from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _create(self, *, client, table, region, wait, stop):
        if not dynamodb_wait(client=client, timeout_s=wait, stop=stop):
            if stop.is_set():
                return
            raise CommandError(
                f"DynamoDB did not answer at {client.meta.endpoint_url} within {wait:.0f} s. "
                "Start DynamoDB Local, or set AWS_ENDPOINT_URL_DYNAMODB to where it listens."
            )
        if table_ensure(client=client, table=table):
            self.stdout.write(f"Created table {table} with a NEW_AND_OLD_IMAGES stream.")
        try:
            source, added = source_ensure(table=table, region=region)
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        if added:
            self.stdout.write(f"Watching {source.table_name} ({source.region}) as a source.")
        if masking_ensure(source=source):
            rules = ", ".join(f"{path} ({mode})" for path, mode in DEMO_MASKING_RULES)
            self.stdout.write(f"Added masking rules on {source.table_name}: {rules}; an Admin can Show unmasked.")
        if trigger_ensure(source=source):
            self.stdout.write(f"Added the example trigger {DEMO_TRIGGER} (see Triggers in the dashboard).")
        if alert_ensure(receiver_url=alert_receiver_url()):
            self.stdout.write(f"Added the alert rule {DEMO_ALERT_RULE!r}; the alerts process prints what it sends.")

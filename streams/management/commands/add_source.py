import os

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from streams.models import StreamSource
from streams.sources import SourceError, source_add
from streams.tasks import discover_source


class Command(BaseCommand):
    help = "Watch a DynamoDB table's stream. The table must exist and have a stream enabled."

    def add_arguments(self, parser):
        parser.add_argument("table")
        parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        parser.add_argument("--endpoint-url", default="", help="Only when not set through AWS_ENDPOINT_URL_DYNAMODB.")
        parser.add_argument("--start-position", choices=StreamSource.StartPosition.values, default="TRIM_HORIZON")
        parser.add_argument("--retention-days", type=int)

    def handle(self, *args, table, region, endpoint_url, start_position, retention_days, **options):
        if not region:
            raise CommandError("No region: pass --region or set AWS_REGION.")
        if retention_days is not None and retention_days < 1:
            raise CommandError("--retention-days must be at least 1.")
        try:
            source = source_add(
                table_name=table,
                region=region,
                endpoint_url=endpoint_url,
                start_position=start_position,
                retention_days=retention_days,
            )
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        transaction.on_commit(lambda: discover_source.delay(source.pk))
        self.stdout.write(f"Watching {source.table_name} ({source.region}): {source.stream_arn} [{source.view_type}]")

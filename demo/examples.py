"""The demo's example trigger handler: written as for AWS Lambda, and runnable there as is.

It notifies (here: logs) each order that ships, and reports the records it could not handle
with ReportBatchItemFailures so that only those are sent again.
"""

import logging

log = logging.getLogger("shardwatch.demo.shipping")


def notify_shipped(event, context):
    failures = []
    for record in event["Records"]:
        image = record["dynamodb"].get("NewImage", {})
        order = record["dynamodb"]["Keys"]["pk"]["S"]
        tracking = image.get("tracking", {}).get("M", {}).get("number", {}).get("S")
        if not tracking:
            # A shipped order without tracking is a data problem worth a retry and, after
            # that, a dead letter someone will look at.
            failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
            continue
        log.info("order %s shipped with tracking %s (request %s)", order, tracking, context.aws_request_id)
    return {"batchItemFailures": failures}

"""Invoking a trigger's target with one Lambda event, the way Lambda's event source mapping would.

``target_invoke(trigger=..., payload=..., request_id=...)`` returns an ``InvokeResult`` and never
raises for anything the target did: exceptions, non-2xx answers, timeouts and unreachable
endpoints all come back as an outcome, so the caller can record them and apply the trigger's
retry settings.

Outcomes (``Outcome``, workers.models, the one enum the runner records with too):

- ``SUCCESS``: the target answered; ``response`` holds its answer, read the same way for every
  target (see ``InvokeResult``; used for ReportBatchItemFailures).
- ``FUNCTION_ERROR``: the target failed, or could not be reached (connection refused, DNS,
  AccessDenied, a missing function, ...). ``error_type`` names the cause. Counts as an attempt.
- ``TIMEOUT``: the target did not answer within ``trigger.timeout_s``. Counts as an attempt.
- ``THROTTLED``: the Lambda API itself answered 429 (TooManyRequestsException) or 5xx. Lambda's
  event source mapping retries these without counting them against MaximumRetryAttempts or
  bisecting the batch, so the caller should back off and retry the same batch with the same
  attempt number. An Invocation never stores it: it is not a result of the function.

One module per kind of target: ``python`` (a handler in a warm process of its own),
``webhook`` (a signed POST; its docstring says how a receiver verifies it) and ``lambda_`` (an
AWS Lambda function). ``base`` holds what they share.
"""

import dataclasses
import time

from workers.models import Outcome, Trigger
from workers.targets.base import NOT_JSON, InvokeResult
from workers.targets.lambda_ import lambda_invoke
from workers.targets.python import python_invoke
from workers.targets.webhook import webhook_invoke

__all__ = ["NOT_JSON", "InvokeResult", "Outcome", "target_invoke"]

_INVOKERS = {
    Trigger.Target.PYTHON: python_invoke,
    Trigger.Target.WEBHOOK: webhook_invoke,
    Trigger.Target.LAMBDA: lambda_invoke,
}


def target_invoke(*, trigger: Trigger, payload: bytes, request_id: str) -> InvokeResult:
    """Send one event, given as its JSON, to the trigger's target and say how it went. The
    webhook and Lambda targets send those bytes as they are."""
    invoke = _INVOKERS.get(trigger.target)
    if invoke is None:
        return InvokeResult(
            Outcome.FUNCTION_ERROR, None, "", "Shardwatch.UnknownTarget", f"Unknown target {trigger.target!r}"
        )
    started = time.perf_counter()
    result = invoke(trigger=trigger, payload=payload, request_id=request_id)
    return dataclasses.replace(result, duration_ms=(time.perf_counter() - started) * 1000)

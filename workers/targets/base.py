"""What every kind of target shares: the result of an invocation and the one reading of an answer.

A Python handler's answer is always JSON; a webhook's or a Lambda custom runtime's may be
anything. All three are read here, the same way, so that a response means the same thing to
ReportBatchItemFailures (workers.responses) whichever target gave it.
"""

import dataclasses
import json

from workers.models import MAX_PAYLOAD_BYTES, Outcome, Trigger

BODY_LIMIT_BYTES = 64 * 1024


class _NotJson:
    """The response of a target whose answer is not JSON. It is not None: None is the answer
    null, or no answer at all, which Lambda takes as a success."""

    def __repr__(self) -> str:
        return "NOT_JSON"


NOT_JSON = _NotJson()


@dataclasses.dataclass(frozen=True)
class InvokeResult:
    outcome: Outcome  # SUCCESS, FUNCTION_ERROR, TIMEOUT or THROTTLED
    # What the function answered, read the same way for every kind of target: the parsed JSON,
    # None for null or an empty answer, NOT_JSON for an answer that is not JSON.
    response: object
    body: str  # raw response text, truncated to 64 KB
    error_type: str = ""
    error_message: str = ""
    duration_ms: float = 0.0


def body_truncate(text: str) -> str:
    """`text` cut to BODY_LIMIT_BYTES of UTF-8, never inside a character: what an Invocation
    keeps of an answer."""
    data = text.encode("utf-8")
    if len(data) <= BODY_LIMIT_BYTES:
        return text
    return data[:BODY_LIMIT_BYTES].decode("utf-8", errors="ignore")


def answer_read(text: str) -> object:
    """An answer's text as the function's response: its JSON, None when it is empty, NOT_JSON
    when it is not JSON. The one reading of an answer for all three kinds of target."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return NOT_JSON


def result_too_large(text: str) -> InvokeResult:
    """The result for an answer over Lambda's limit on a synchronous response, which is its
    6 MB payload limit."""
    return InvokeResult(
        Outcome.FUNCTION_ERROR, None, body_truncate(text), "Function.ResponseSizeTooLarge",
        f"Response larger than {MAX_PAYLOAD_BYTES} bytes",
    )


def trigger_region(trigger: Trigger) -> str:
    """The region a target runs in: its source's, or us-east-1 for a trigger without one."""
    try:
        return trigger.source.region or "us-east-1"
    except Trigger.source.RelatedObjectDoesNotExist:
        return "us-east-1"

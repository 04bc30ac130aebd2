"""Reading a function's answer under ReportBatchItemFailures: which records of a batch failed.

The same reading for every kind of target, for a cursor's batches and for a replay alike (see
batch_item_failures for AWS's rules and where each comes from).
"""

from dataclasses import replace
from typing import NamedTuple

from workers.targets import NOT_JSON, InvokeResult, Outcome

# The error type of an invocation whose function returned normally with a response that
# ReportBatchItemFailures cannot read: a failure of the whole batch, but not a function error.
INVALID_RESPONSE = "InvalidBatchItemFailures"


class FailureReport(NamedTuple):
    """What a function's response under ReportBatchItemFailures says about its batch."""

    failed_from: int | None  # index in the batch of the lowest reported failure; None: all succeeded
    problem: str = ""  # why the response is malformed (the whole batch failed); "" when it is valid


def batch_item_failures(*, response, records: list) -> FailureReport:
    """Read a function's response under ReportBatchItemFailures, the same way for every kind of
    target. `response` is InvokeResult.response: the parsed JSON, None for null or no answer,
    targets.NOT_JSON for an answer that is not JSON. `records` is the batch as sent, in order
    (anything with a `sequence_number`).

    Lambda's rules ("Configuring partial batch response with DynamoDB and Lambda", success and
    failure conditions) and AWS's recorded runs (localstack's AWS-validated
    test_dynamodb_report_batch_item_success_scenarios / _failure_scenarios):
    - success: null, [], {} and an object whose batchItemFailures is null, [] or absent;
    - a partial failure: a list of {"itemIdentifier": "<SequenceNumber>"}; the lowest one is
      where the batch is retried from (duplicates and order do not matter);
    - the whole batch failed: an itemIdentifier that is missing, null, "" or not a string
      (recorded: 123).
    Everything else has no AWS rule or record. It is read as a whole-batch failure, the reading
    that loses no record: the batch is retried, and given up on only into the dead-letter list.
    That covers an answer that is not JSON (Lambda's SQS rules list "an invalid JSON response"
    as a complete failure), a non-empty list, a string, a number, true or false, a
    batchItemFailures that is not a list, an entry that is not an object, and an
    itemIdentifier that is not a sequence number of the batch (the SQS rules fail the batch on
    an unknown message ID). Keys other than batchItemFailures and itemIdentifier are ignored:
    a missing batchItemFailures is the null list AWS recorded for {}, and Lambda's own
    tumbling-window response carries "state" beside it. Every case is in
    tests/workers/test_batch_responses.py with its source.
    """
    if response is NOT_JSON:
        return FailureReport(None, "The response is not JSON.")
    if response is None or response == []:
        return FailureReport(None)
    if not isinstance(response, dict):
        return FailureReport(None, f"The response is {_json_kind(response)}, not an object.")
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return FailureReport(None)
    if not isinstance(failures, list):
        return FailureReport(None, f"batchItemFailures is {_json_kind(failures)}, not a list.")
    index_of = {record.sequence_number: index for index, record in enumerate(records)}
    lowest = None
    for position, failure in enumerate(failures):
        entry = f"batchItemFailures[{position}]"
        if not isinstance(failure, dict):
            return FailureReport(None, f"{entry} is {_json_kind(failure)}, not an object.")
        if "itemIdentifier" not in failure:
            return FailureReport(None, f"{entry} has no itemIdentifier.")
        identifier = failure["itemIdentifier"]
        if not isinstance(identifier, str):
            return FailureReport(None, f"{entry}.itemIdentifier is {_json_kind(identifier)}, not a string.")
        if identifier == "":
            return FailureReport(None, f"{entry}.itemIdentifier is empty.")
        if identifier not in index_of:
            return FailureReport(None, f"{entry}.itemIdentifier {identifier[:100]!r} is not a sequence number of the batch.")
        lowest = index_of[identifier] if lowest is None else min(lowest, index_of[identifier])
    return FailureReport(lowest)


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if value == "" else "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"



def result_malformed(result: InvokeResult, report: FailureReport) -> InvokeResult:
    """The result of an invocation whose response ReportBatchItemFailures cannot read: a
    failure of the whole batch, of type INVALID_RESPONSE."""
    return replace(result, outcome=Outcome.FUNCTION_ERROR, error_type=INVALID_RESPONSE,
                   error_message=f"The batchItemFailures response is malformed: {report.problem}")

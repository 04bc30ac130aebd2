"""workers.targets.lambda_: Lambda calls through boto3 to moto's Lambda API server, or to a
small server speaking the Lambda Invoke API's wire format."""

import json
import urllib.request

import orjson
import pytest

from tests.support.dynamodb_local import free_port
from tests.support.http_servers import QuietHandler, http_server
from tests.support.moto_aws import lambda_function_create, moto_api, moto_server
from tests.support.targets import EVENT, make_trigger
from workers.targets import InvokeResult, target_invoke


@pytest.fixture
def lambda_env(monkeypatch):
    """Credentials and region for boto3, as a deployment would set them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "shardwatchtest")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shardwatchtest")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return monkeypatch


@pytest.fixture
def moto_lambda(lambda_env):
    """moto's server (tests/support/moto_aws.py), reached through boto3's standard
    AWS_ENDPOINT_URL_LAMBDA, with its Docker-less Lambda backend, whose Invoke answers without
    running any code."""
    with moto_server() as endpoint:
        lambda_env.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint)
        yield endpoint


def test_it_invokes_a_lambda_function_through_the_lambda_api(moto_lambda):
    """What this proves: boto3 reaches the endpoint named by AWS_ENDPOINT_URL_LAMBDA (nothing is
    hard-coded) with a well-formed Invoke request for the trigger's function (RequestResponse,
    the event as the JSON payload: moto's Docker-less backend answers with the payload it was
    sent), and that we read and parse the answer, including a queued
    ReportBatchItemFailures-style response. What it does not prove: the function's code never
    runs (moto needs Docker for that), and moto's Docker-less Invoke does not check that the
    function exists (see the next test) nor can it answer with a FunctionError: those are tested
    against a server speaking the Invoke API's wire format below."""
    lambda_function_create(moto_lambda, "orders-audit-fn")
    trigger = make_trigger(target="lambda", function_name="orders-audit-fn")

    echoed = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-12")

    assert echoed.outcome == "success"
    assert echoed.response == EVENT
    assert json.loads(echoed.body) == EVENT

    queued = json.dumps({"batchItemFailures": [{"itemIdentifier": "111"}]})
    request = urllib.request.Request(
        f"{moto_lambda}/moto-api/static/lambda-simple/response",
        data=json.dumps({"results": [queued], "region": "eu-west-1"}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()

    answered = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-13")

    assert answered.outcome == "success"
    assert answered.response == {"batchItemFailures": [{"itemIdentifier": "111"}]}


def test_it_reports_a_missing_lambda_function_as_a_function_error(moto_lambda):
    """moto's Docker backend looks the function up before it would start a container, so this
    is moto's real ResourceNotFoundException answer (404) to Invoke."""
    moto_api(moto_lambda, "config", {"lambda": {"use_docker": True}})
    trigger = make_trigger(target="lambda", function_name="no-such-function")

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-14")

    assert result.outcome == "function_error"
    assert result.error_type == "ResourceNotFoundException"
    assert "no-such-function" in result.error_message


# Every answer of Lambda's API names its request.
REQUEST_ID = {"x-amzn-RequestId": "11111111-2222-3333-4444-555555555555"}


class LambdaInvokeApi(QuietHandler):
    """Lambda's Invoke API at the network edge: POST /2015-03-31/functions/<name>/invocations
    answered as the real service does (a function error is a 200 with X-Amz-Function-Error and
    the runtime's error document; service errors carry x-amzn-ErrorType)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        mode = self.server.mode
        if mode == "unhandled":
            error = {"errorMessage": "'pk'", "errorType": "KeyError", "requestId": "r", "stackTrace": ["  File ..."]}
            return self.answer_json(200, error, {**REQUEST_ID, "X-Amz-Function-Error": "Unhandled"})
        if mode == "timed_out":
            error = {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 3.00 seconds"}
            return self.answer_json(200, error, {**REQUEST_ID, "X-Amz-Function-Error": "Unhandled"})
        if mode == "throttled":
            error = {
                "Type": "User",
                "message": "Rate Exceeded.",
                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
            }
            return self.answer_json(429, error, {**REQUEST_ID, "x-amzn-ErrorType": "TooManyRequestsException"})
        if mode == "service_error":
            error = {"Type": "Service", "message": "Internal failure"}
            return self.answer_json(500, error, {**REQUEST_ID, "x-amzn-ErrorType": "ServiceException"})
        if mode == "access_denied":
            error = {"Type": "User", "Message": "not authorized to perform: lambda:InvokeFunction"}
            return self.answer_json(403, error, {**REQUEST_ID, "x-amzn-ErrorType": "AccessDeniedException"})



@pytest.fixture
def lambda_api(lambda_env):
    with http_server(LambdaInvokeApi, mode="unhandled", requests=[]) as server:
        lambda_env.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
        yield server


def lambda_call(**fields) -> InvokeResult:
    return target_invoke(trigger=make_trigger(target="lambda", **fields), payload=orjson.dumps(EVENT), request_id="req-15")


def test_it_reports_a_lambda_function_error_from_the_runtimes_error_document(lambda_api):
    result = lambda_call(function_name="orders-audit-fn")

    assert result.outcome == "function_error"
    assert (result.error_type, result.error_message) == ("KeyError", "'pk'")
    assert result.response["stackTrace"] == ["  File ..."]
    [request] = lambda_api.requests
    assert request["path"] == "/2015-03-31/functions/orders-audit-fn/invocations"
    assert request["headers"]["X-Amz-Invocation-Type"] == "RequestResponse"
    assert json.loads(request["body"]) == EVENT
    assert "/eu-west-1/lambda/" in request["headers"]["Authorization"]  # signed for the source's region


def test_it_reports_lambdas_own_timeout_of_the_function_as_a_timeout(lambda_api):
    lambda_api.mode = "timed_out"

    result = lambda_call(function_name="orders-audit-fn")

    assert (result.outcome, result.error_type) == ("timeout", "Sandbox.Timedout")


def test_it_reports_lambda_throttling_and_service_errors_as_throttled_without_retrying(lambda_api):
    lambda_api.mode = "throttled"
    throttled = lambda_call(function_name="orders-audit-fn")
    lambda_api.mode = "service_error"
    failed = lambda_call(function_name="orders-audit-fn")

    assert (throttled.outcome, throttled.error_type) == ("throttled", "TooManyRequestsException")
    assert throttled.error_message == "Rate Exceeded."
    assert (failed.outcome, failed.error_type) == ("throttled", "ServiceException")
    assert len(lambda_api.requests) == 2  # botocore retried neither: the caller's scheduler does


def test_it_reports_access_denied_as_a_function_error(lambda_api):
    lambda_api.mode = "access_denied"

    result = lambda_call(function_name="orders-audit-fn")

    assert (result.outcome, result.error_type) == ("function_error", "AccessDeniedException")


def test_it_reports_an_unreachable_lambda_endpoint_as_a_function_error(lambda_env):
    lambda_env.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{free_port()}")

    result = lambda_call(function_name="orders-audit-fn")

    assert (result.outcome, result.error_type) == ("function_error", "EndpointConnectionError")

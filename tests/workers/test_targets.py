"""workers.targets: a trigger's target invoked with one Lambda event.

No mocks: Python handlers are real functions (tests/handlers.py), webhooks go to a real HTTP
server on 127.0.0.1, and Lambda calls go through boto3 to moto's Lambda API server or to a
small server speaking the Lambda Invoke API's wire format.
"""

import hashlib
import hmac
import io
import json
import os
import threading
import time
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import orjson
import pytest

from streams.models import StreamSource
from tests.support.dynamodb_local import free_port
from workers.models import Trigger
from workers.targets import InvokeResult, target_invoke
from workers.targets import python as python_target
from workers.targets.python import handler_check, handler_hosts_stop
from workers.targets.webhook import WebhookSecretUnreadable, webhook_secret_decrypt, webhook_secret_new

EVENT = {
    "Records": [
        {
            "eventID": "c4ca4238a0b923820dcc509a6f75849b",
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1795000000,
                "Keys": {"pk": {"S": "order#1"}},
                "NewImage": {"pk": {"S": "order#1"}, "total": {"N": "12.50"}},
                "SequenceNumber": "111",
                "SizeBytes": 40,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-26T00:00:00.000",
        },
        {
            "eventID": "c81e728d9d4c2f636f067f89cc14862c",
            "eventName": "MODIFY",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1795000001,
                "Keys": {"pk": {"S": "order#2"}},
                "NewImage": {"pk": {"S": "order#2"}, "total": {"N": "3"}},
                "SequenceNumber": "222",
                "SizeBytes": 38,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-26T00:00:00.000",
        },
    ]
}


def make_trigger(**fields) -> Trigger:
    """An unsaved trigger on an unsaved source in eu-west-1: targets need no database."""
    fields.setdefault("name", "orders-audit")
    fields.setdefault("timeout_s", 3)
    return Trigger(source=StreamSource(table_name="orders", region="eu-west-1"), **fields)


# Python handlers ------------------------------------------------------------------------------


def test_it_calls_the_handler_with_the_event_and_a_lambda_context():
    trigger = make_trigger(target="python", handler="tests.handlers.basic.echo", timeout_s=5)

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-1")

    assert result.outcome == "success"
    assert result.response["event"] == EVENT
    assert result.response["function_name"] == "orders-audit"
    assert result.response["function_version"] == "$LATEST"
    assert result.response["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:000000000000:function:orders-audit"
    assert result.response["memory_limit_in_mb"] == 128
    assert result.response["aws_request_id"] == "req-1"
    assert result.response["log_group_name"] == "/aws/lambda/orders-audit"
    assert "[$LATEST]" in result.response["log_stream_name"]
    assert 4000 < result.response["remaining_ms"] <= 5000
    assert json.loads(result.body) == result.response
    assert result.duration_ms > 0


def test_it_reports_a_raising_handler_as_a_function_error_with_its_traceback():
    trigger = make_trigger(target="python", handler="tests.handlers.basic.raising")

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-2")

    assert result.outcome == "function_error"
    assert result.error_type == "RecordRejected"
    assert result.error_message == "cannot take 2 records"
    assert "Traceback" in result.body and "tests/handlers/basic.py" in result.body
    assert result.response is None


def test_it_times_out_a_handler_that_runs_past_timeout_s_and_stops_it(tmp_path):
    trigger = make_trigger(target="python", handler="tests.handlers.basic.sleeping", timeout_s=1)
    marker = tmp_path / "finished"
    event = {"sleep_s": 2, "marker": str(marker), "Records": []}
    target_invoke(trigger=make_trigger(target="python", handler="tests.handlers.basic.sleeping"),
                  payload=orjson.dumps({"sleep_s": 0, "Records": []}), request_id="warm")  # the host is warm

    started = time.monotonic()
    result = target_invoke(trigger=trigger, payload=orjson.dumps(event), request_id="req-3")

    assert result.outcome == "timeout"
    assert result.error_type == "Sandbox.Timedout"
    assert result.error_message == "Task timed out after 1.00 seconds"
    assert time.monotonic() - started < 2
    assert 1000 <= result.duration_ms < 2000
    time.sleep(2)
    assert not marker.exists()  # killed with its host, as Lambda kills the sandbox


def test_it_keeps_a_handlers_process_warm_between_invocations_and_starts_it_afresh_when_stopped():
    trigger = make_trigger(target="python", handler="tests.handlers.basic.counting")
    invoke = lambda: target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="r").response  # noqa: E731

    first, second = invoke(), invoke()
    handler_hosts_stop()
    cold = invoke()

    assert (first["invocations"], second["invocations"]) == (1, 2) and first["pid"] == second["pid"]
    assert cold["invocations"] == 1 and cold["pid"] != first["pid"]
    assert first["pid"] != os.getpid()


def test_it_replaces_a_host_that_died_with_the_thread_that_started_it():
    trigger = make_trigger(target="python", handler="tests.handlers.basic.counting")
    answers = []
    thread = threading.Thread(target=lambda: answers.append(
        target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="in-thread").response))
    thread.start()
    thread.join()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _pid_alive(answers[0]["pid"]):
        time.sleep(0.05)

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="after")

    assert not _pid_alive(answers[0]["pid"])  # the kernel killed it with its thread (PR_SET_PDEATHSIG)
    assert (result.outcome, result.error_type, result.error_message) == ("success", "", "")
    assert result.response["invocations"] == 1


def _pid_alive(pid: int) -> bool:
    """Whether any thread of the process still runs. A killed host stays a zombie until it is
    reaped, and its main thread can be a zombie while its other threads are still exiting."""
    states = []
    for task in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(task.read_text().split(")")[-1].split()[0])
        except (FileNotFoundError, ProcessLookupError):
            # The thread exited between the listing and the read (ESRCH on a vanished task).
            continue
    return any(state not in ("Z", "X") for state in states)


def test_it_reports_a_handler_that_kills_its_process_and_starts_a_new_one():
    exiting = make_trigger(target="python", handler="tests.handlers.basic.exiting")

    result = target_invoke(trigger=exiting, payload=orjson.dumps(EVENT), request_id="req-x")
    again = target_invoke(trigger=exiting, payload=orjson.dumps(EVENT), request_id="req-y")

    assert (result.outcome, result.error_type) == ("function_error", "Runtime.ExitError")
    assert "RequestId: req-x" in result.error_message and "exit status 3" in result.error_message
    assert (again.outcome, again.error_type) == ("function_error", "Runtime.ExitError")


def test_it_lets_handlers_print_without_disturbing_the_answer():
    result = target_invoke(trigger=make_trigger(target="python", handler="tests.handlers.basic.chatty"),
                           payload=orjson.dumps(EVENT), request_id="req-p")

    assert (result.outcome, result.response) == ("success", {"records": 2})


def test_it_reports_a_module_that_takes_too_long_to_load(monkeypatch):
    monkeypatch.setattr(python_target, "INIT_TIMEOUT_S", 0.5)

    result = target_invoke(trigger=make_trigger(target="python", handler="tests.handlers.slow_import.handler"),
                           payload=orjson.dumps(EVENT), request_id="req-i")

    assert (result.outcome, result.error_type) == ("function_error", "Runtime.InitError")
    assert "did not load" in result.error_message


def test_it_reports_a_return_value_that_is_not_json_as_a_function_error():
    trigger = make_trigger(target="python", handler="tests.handlers.basic.returning_non_json")

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-4")

    assert result.outcome == "function_error"
    assert result.error_type == "Runtime.MarshalError"
    assert "not JSON serializable" in result.error_message


def test_it_reports_a_handler_that_does_not_import_as_a_function_error():
    missing_module = target_invoke(
        trigger=make_trigger(target="python", handler="tests.no_such_module.handler"), payload=orjson.dumps(EVENT), request_id="r"
    )
    missing_function = target_invoke(
        trigger=make_trigger(target="python", handler="tests.handlers.basic.no_such_function"), payload=orjson.dumps(EVENT), request_id="r"
    )

    assert (missing_module.outcome, missing_module.error_type) == ("function_error", "Runtime.ImportModuleError")
    assert (missing_function.outcome, missing_function.error_type) == ("function_error", "Runtime.HandlerNotFound")


def test_it_checks_handler_paths_for_the_admin():
    assert handler_check("tests.handlers.basic.echo") is None
    assert "Unable to import module" in handler_check("tests.no_such_module.handler")
    assert "missing on module" in handler_check("tests.handlers.basic.no_such_function")
    assert "not callable" in handler_check("tests.handlers.basic.NOT_CALLABLE")
    assert "dotted path" in handler_check("echo")


# Webhooks -------------------------------------------------------------------------------------


def verify(secret: str, headers, body: bytes, tolerance_s: int = 300) -> bool:
    """The verification snippet from workers/targets/webhook.py's docstring, as a receiver would run it."""
    timestamp = headers["X-Shardwatch-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Shardwatch-Signature"], "v1=" + expected)


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that checks signatures and answers as server.mode says."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if not verify(self.server.secret, self.headers, body):
            return self.answer(401, b"bad signature")
        if self.server.mode == "ok":
            event = json.loads(body)
            failures = [{"itemIdentifier": event["Records"][-1]["dynamodb"]["SequenceNumber"]}]
            return self.answer(200, json.dumps({"batchItemFailures": failures}).encode(), "application/json")
        if self.server.mode == "error":
            return self.answer(500, b"database is down")
        if self.server.mode == "sleep":
            time.sleep(2)
            return self.answer(200, b"{}", "application/json")

    def answer(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.secret, server.encrypted = webhook_secret_new()
    server.mode = "ok"
    server.requests = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/orders"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def webhook_trigger(receiver, **fields) -> Trigger:
    return make_trigger(
        target="webhook", webhook_url=receiver.url, webhook_secret_encrypted=receiver.encrypted, **fields
    )


def test_it_posts_a_signed_event_and_parses_the_json_answer(receiver):
    result = target_invoke(trigger=webhook_trigger(receiver), payload=orjson.dumps(EVENT), request_id="req-5")

    assert result.outcome == "success"
    assert result.response == {"batchItemFailures": [{"itemIdentifier": "222"}]}
    assert json.loads(result.body) == result.response
    [request] = receiver.requests
    assert request["path"] == "/hooks/orders"
    assert json.loads(request["body"]) == EVENT
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Shardwatch-Request-Id"] == "req-5"
    assert request["headers"]["X-Shardwatch-Signature"].startswith("v1=")


@pytest.mark.django_db
def test_it_posts_the_stored_records_as_the_event_the_invocation_page_shows(receiver, orders_table):
    from streams.lambda_event import lambda_event
    from tests.support.triggering import run_until_idle
    from workers.models import Invocation
    from workers.selectors import invocation_records

    orders_table.put("order#1", status="new")
    orders_table.put("order#1", status="paid")
    orders_table.ingest()
    trigger = Trigger.objects.create(
        name="orders-hook", source=orders_table, target="webhook", webhook_url=receiver.url,
        webhook_secret_encrypted=receiver.encrypted,
    )

    run_until_idle(trigger)

    [request] = receiver.requests
    [invocation] = Invocation.objects.filter(trigger=trigger)
    sent = json.loads(request["body"])
    assert sent == lambda_event(invocation_records(invocation=invocation))
    assert [record["eventName"] for record in sent["Records"]] == ["INSERT", "MODIFY"]
    assert sent["Records"][1]["dynamodb"]["OldImage"]["status"] == {"S": "new"}
    assert sent["Records"][1]["dynamodb"]["NewImage"]["status"] == {"S": "paid"}
    assert invocation.outcome == "success"


def test_it_reports_a_non_2xx_answer_as_a_function_error(receiver):
    receiver.mode = "error"

    result = target_invoke(trigger=webhook_trigger(receiver), payload=orjson.dumps(EVENT), request_id="req-6")

    assert result.outcome == "function_error"
    assert result.error_type == "HTTP 500"
    assert result.body == "database is down"
    assert len(receiver.requests) == 1


def test_it_is_rejected_by_a_receiver_holding_another_secret(receiver):
    _, other_encrypted = webhook_secret_new()
    trigger = webhook_trigger(receiver)
    trigger.webhook_secret_encrypted = other_encrypted

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-7")

    assert (result.outcome, result.error_type, result.body) == ("function_error", "HTTP 401", "bad signature")


def test_it_times_out_a_webhook_that_answers_too_late(receiver):
    receiver.mode = "sleep"

    result = target_invoke(trigger=webhook_trigger(receiver, timeout_s=1), payload=orjson.dumps(EVENT), request_id="req-8")

    assert result.outcome == "timeout"
    assert 1000 <= result.duration_ms < 2000


def test_it_reports_a_refused_connection_as_a_function_error():
    _, encrypted = webhook_secret_new()
    trigger = make_trigger(
        target="webhook", webhook_url=f"http://127.0.0.1:{free_port()}/", webhook_secret_encrypted=encrypted
    )

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-9")

    assert (result.outcome, result.error_type) == ("function_error", "ConnectionRefusedError")


def test_it_never_opens_a_non_http_url(tmp_path):
    _, encrypted = webhook_secret_new()
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("{}")
    trigger = make_trigger(target="webhook", webhook_url=secret_file.as_uri(), webhook_secret_encrypted=encrypted)

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-10")

    assert (result.outcome, result.error_type) == ("function_error", "Shardwatch.BadWebhookUrl")


def test_it_stores_webhook_secrets_encrypted_and_reads_them_back():
    plain, encrypted = webhook_secret_new()

    assert plain not in encrypted
    assert webhook_secret_decrypt(encrypted) == plain
    assert webhook_secret_new()[0] != plain


def test_it_cannot_read_secrets_after_secret_key_rotation(settings, receiver):
    _, encrypted = webhook_secret_new()
    settings.SECRET_KEY = "a-rotated-secret-key-that-is-also-long-enough-9876543210"

    with pytest.raises(WebhookSecretUnreadable, match="different SECRET_KEY"):
        webhook_secret_decrypt(encrypted)
    result = target_invoke(trigger=webhook_trigger(receiver), payload=orjson.dumps(EVENT), request_id="req-11")
    assert (result.outcome, result.error_type) == ("function_error", "Shardwatch.WebhookSecretUnreadable")
    assert receiver.requests == []


# Lambda ---------------------------------------------------------------------------------------


def moto_config(endpoint: str, config: dict) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=json.dumps(config).encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).close()


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
    """moto's server (the Lambda API, in a thread of this process) on a free port, reached
    through boto3's standard AWS_ENDPOINT_URL_LAMBDA. There is no Docker here, so moto is told
    through its /moto-api/config endpoint to use its Docker-less Lambda backend
    ({"lambda": {"use_docker": False}}), whose Invoke answers without running any code."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    lambda_env.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint)
    moto_config(endpoint, {"lambda": {"use_docker": False}})
    yield endpoint
    # moto keeps its config in a module global of this process: put the default back.
    moto_config(endpoint, {"lambda": {"use_docker": True}})
    server.stop()


def lambda_function_create(endpoint: str, name: str) -> None:
    """Test set-up through moto's own API: an IAM role and a function that would echo its event."""
    iam = boto3.client("iam", endpoint_url=endpoint)
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handle(event, context):\n    return event\n")
    boto3.client("lambda", endpoint_url=endpoint).create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handle", Code={"ZipFile": code.getvalue()}
    )


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
    moto_config(moto_lambda, {"lambda": {"use_docker": True}})
    trigger = make_trigger(target="lambda", function_name="no-such-function")

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-14")

    assert result.outcome == "function_error"
    assert result.error_type == "ResourceNotFoundException"
    assert "no-such-function" in result.error_message


class LambdaInvokeApi(BaseHTTPRequestHandler):
    """Lambda's Invoke API at the network edge: POST /2015-03-31/functions/<name>/invocations
    answered as the real service does (a function error is a 200 with X-Amz-Function-Error and
    the runtime's error document; service errors carry x-amzn-ErrorType)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        mode = self.server.mode
        if mode == "unhandled":
            error = {"errorMessage": "'pk'", "errorType": "KeyError", "requestId": "r", "stackTrace": ["  File ..."]}
            return self.answer(200, error, {"X-Amz-Function-Error": "Unhandled"})
        if mode == "timed_out":
            error = {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 3.00 seconds"}
            return self.answer(200, error, {"X-Amz-Function-Error": "Unhandled"})
        if mode == "throttled":
            error = {
                "Type": "User",
                "message": "Rate Exceeded.",
                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
            }
            return self.answer(429, error, {"x-amzn-ErrorType": "TooManyRequestsException"})
        if mode == "service_error":
            error = {"Type": "Service", "message": "Internal failure"}
            return self.answer(500, error, {"x-amzn-ErrorType": "ServiceException"})
        if mode == "access_denied":
            error = {"Type": "User", "Message": "not authorized to perform: lambda:InvokeFunction"}
            return self.answer(403, error, {"x-amzn-ErrorType": "AccessDeniedException"})

    def answer(self, status, document, headers):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", "11111111-2222-3333-4444-555555555555")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def lambda_api(lambda_env):
    server = ThreadingHTTPServer(("127.0.0.1", 0), LambdaInvokeApi)
    server.mode = "unhandled"
    server.requests = []
    lambda_env.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


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

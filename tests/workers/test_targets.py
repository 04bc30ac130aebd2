"""workers.targets.python: Python handlers run in a warm host process of their own.

No mocks: handlers are real functions (tests/handlers/basic.py) in a real child process. Webhook
and Lambda targets are tested in test_target_webhook.py and test_target_lambda.py.
"""

import json
import os
import threading
import time
from pathlib import Path

import orjson

from meters.logcontext import log_context
from streams.models import StreamSource

from tests.support.targets import EVENT, make_trigger
from workers.targets import python as python_target
from workers.targets import target_invoke
from workers.targets.python import handler_check, handler_hosts_stop


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


def test_it_logs_a_handlers_lines_as_json_with_the_trigger_under_log_format_json(settings, capfd):
    settings.LOG_FORMAT = "json"
    handler_hosts_stop()  # a warm host keeps the format it started with
    trigger = make_trigger(target="python", handler="tests.handlers.basic.logging_a_line", id=7)

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-l")

    assert result.outcome == "success"
    [line] = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "audited" in line]
    assert {k: line[k] for k in ("level", "logger", "message", "trigger")} == {
        "level": "WARNING", "logger": "orders.audit", "message": "audited 2 records", "trigger": 7,
    }
    assert "time" in line


def test_it_logs_a_handlers_prints_as_json_lines_with_the_trigger_source_and_shard(settings, capfd):
    settings.LOG_FORMAT = "json"
    handler_hosts_stop()
    trigger = make_trigger(target="python", handler="tests.handlers.basic.printing", id=7)
    trigger.source = StreamSource(pk=3, table_name="orders", region="eu-west-1")

    with log_context(source=3, shard="shardId-00001", trigger=7):  # as the runner sets it
        result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-j")

    assert result.outcome == "success"
    out = capfd.readouterr()
    assert out.out == ""
    lines = [json.loads(line) for line in out.err.splitlines() if line.strip()]
    fields = {"trigger": 7, "source": 3, "shard": "shardId-00001"}
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("handler.stdout", "got 2 records"), ("handler.stderr", "to stderr"), ("handler.stdout", "no newline yet"),
    ]
    assert all({k: line.get(k) for k in fields} == fields for line in lines)


def test_it_logs_a_handlers_lines_as_text_by_default(settings, capfd):
    settings.LOG_FORMAT = "text"
    handler_hosts_stop()
    trigger = make_trigger(target="python", handler="tests.handlers.basic.logging_a_line", id=7)

    target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-t")

    [line] = [line for line in capfd.readouterr().err.splitlines() if "audited" in line]
    assert line.endswith(" WARNING orders.audit audited 2 records")


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

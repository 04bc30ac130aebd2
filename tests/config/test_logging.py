"""LOG_FORMAT: readable text by default; with json, every line of a real Celery worker's, beat's
and web server's output is one JSON object, Celery's own lines included."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from meters.models import Heartbeat
from tests.support.dynamodb_local import free_port
from tests.support.processes import ARTIFACTS, ROOT, Processes, wait_for

LOG_LINE = (
    "import django, logging; django.setup(); "
    "from meters.logcontext import log_context\n"
    "with log_context(source=4, shard='shardId-9'): logging.getLogger('streams.reader').warning('a line')"
)


# Celery writes this straight to stdout on SIGTERM (celery/apps/worker.py, _shutdown_handler's
# safe_say to sys.__stdout__), not through logging: the one line of a worker that is not JSON.
SHUTDOWN_SAID = "worker: Warm shutdown (MainProcess)"


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
    )


def test_it_logs_readable_text_by_default():
    env = {**os.environ}
    env.pop("LOG_FORMAT", None)
    result = subprocess.run([sys.executable, "-c", LOG_LINE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**env, "DJANGO_SETTINGS_MODULE": "tests.settings"})
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert line.endswith(" WARNING streams.reader a line")


def test_it_logs_one_json_object_a_line_with_the_context_fields():
    result = run_python(LOG_LINE, LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    fields = json.loads(line)
    assert {k: fields[k] for k in ("level", "logger", "message", "source", "shard")} == {
        "level": "WARNING", "logger": "streams.reader", "message": "a line", "source": 4, "shard": "shardId-9",
    }


def test_it_stops_at_start_up_on_an_unknown_log_format():
    result = run_python("import django; django.setup()", LOG_FORMAT="logfmt")
    assert result.returncode != 0
    assert "LOG_FORMAT='logfmt' is not one of text, json" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_it_logs_json_lines_from_a_real_worker_and_beat(tmp_path):
    processes = Processes(LOG_FORMAT="json")
    try:
        processes.worker("json-worker", concurrency=1)
        processes.beat(tmp_path / "beat-schedule", name="json-beat", quiet=True)
        assert wait_for(lambda: Heartbeat.objects.filter(role=Heartbeat.Role.WORKER).exists()
                        and Heartbeat.objects.filter(role=Heartbeat.Role.BEAT).exists(), timeout=60)
        # Beat sends dispatch-triggers every 2 s; the worker runs it and says so.
        assert wait_for(lambda: "succeeded in" in (ARTIFACTS / "json-worker.log").read_text(), timeout=30)
    finally:
        processes.stop_all()

    worker, beat = logged_json("json-worker"), logged_json("json-beat")
    for line in worker + beat:
        assert {"time", "level", "logger", "message"} <= set(line), line
    assert any(line["logger"] == "celery.app.trace" and "succeeded in" in line["message"] for line in worker)
    assert any(line["message"].endswith(" ready.") for line in worker)
    assert any("Sending due task" in line["message"] for line in beat)


def logged_json(name: str) -> list[dict]:
    """The lines of a process's output in test-artifacts/, each decoded; fails on one that is not JSON."""
    decoded = []
    for line in (ARTIFACTS / f"{name}.log").read_text().splitlines():
        if not line or line == SHUTDOWN_SAID:
            continue
        try:
            decoded.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{name} wrote a line that is not JSON: {line!r}")
    assert decoded, f"{name} logged nothing"
    return decoded


def web_output(tmp_path, **env: str) -> str:
    """What a real web process (daphne) printed while it answered /healthz and a 404."""
    # daphne writes its access log itself, as text, unless told not to (-v 0): a JSON deployment
    # leaves access logs to its proxy or load balancer.
    port = free_port()
    output = tmp_path / "web.log"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env}
    with open(output, "wb") as sink:
        web = subprocess.Popen(
            [str(Path(sys.executable).parent / "daphne"), "-v", "0", "-b", "127.0.0.1", "-p", str(port),
             "config.asgi:application"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        assert wait_for(lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200, timeout=30), output.read_text()
        assert http_status(f"http://127.0.0.1:{port}/no-such-page") == 404
    finally:
        web.terminate()
        web.wait(timeout=15)
    return output.read_text()


def test_it_logs_json_lines_from_the_web_process(tmp_path):
    lines = [json.loads(line) for line in web_output(tmp_path, LOG_FORMAT="json").splitlines() if line]
    assert any(line["logger"] == "django.request" and line["message"] == "Not Found: /no-such-page" for line in lines)


def test_it_logs_each_request_warning_once_in_json_with_debug_on(tmp_path):
    # DEBUG=1, as `make demo` runs: Django's own "django" logger then has a text console handler
    # of its own besides propagating to ours.
    output = web_output(tmp_path, LOG_FORMAT="json", DEBUG="1")
    lines = []
    for line in output.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pytest.fail(f"the web process wrote a line that is not JSON: {line!r}")
    assert [line["logger"] for line in lines if line["message"] == "Not Found: /no-such-page"] == ["django.request"]


def test_it_logs_each_request_warning_once_in_text_with_debug_on(tmp_path):
    output = web_output(tmp_path, LOG_FORMAT="text", DEBUG="1")
    said = [line for line in output.splitlines() if "Not Found: /no-such-page" in line]
    assert len(said) == 1 and said[0].endswith(" WARNING django.request Not Found: /no-such-page"), output


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None

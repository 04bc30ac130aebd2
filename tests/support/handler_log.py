"""Where handlers run by tests note what they saw, for the tests to read.

Python-handler triggers run in a process of their own (workers/handler_host.py), as on Lambda,
so a handler's module state is not the test's: handlers append JSON lines to a file in the
directory named by SHARDWATCH_TEST_HANDLER_LOG, which tests/conftest.py makes for each test.
"""

import json
import os
from pathlib import Path

ENV = "SHARDWATCH_TEST_HANDLER_LOG"


def _directory() -> Path:
    return Path(os.environ[ENV])


def note(entry) -> None:
    # One write per line to a file opened for appending: lines from two hosts never interleave.
    with open(_directory() / "notes.jsonl", "a") as log:
        log.write(json.dumps(entry) + "\n")


def notes() -> list:
    path = _directory() / "notes.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def first_time(flag: str) -> bool:
    """True once per test for each flag, in whichever host asks first."""
    try:
        os.close(os.open(_directory() / f"flag-{flag}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def answer_set(text: str) -> None:
    """Tell this test's handlers what to answer (tests/trigger_handlers.py answer_once)."""
    (_directory() / "answer.json").write_text(text)


def answer() -> str:
    return (_directory() / "answer.json").read_text()

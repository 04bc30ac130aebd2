"""meters.logcontext: the source, shard and trigger a line is about, as fields of JSON lines."""

import logging
import threading

import pytest

from meters.logcontext import log_context
from tests.support.logs import json_lines

log = logging.getLogger("tests.logcontext")


def test_it_writes_the_context_as_fields_of_json_lines_and_restores_what_was_there():
    with json_lines("tests.logcontext") as lines:
        log.info("before")
        with log_context(source=3):
            with log_context(shard="shardId-0001", trigger=None):
                log.warning("polled %s", "shardId-0001")
            log.info("back to the source")
        log.info("after")

    before, polled, back, after = lines()
    assert before["message"] == "before" and before["level"] == "INFO" and before["logger"] == "tests.logcontext"
    assert {"source", "shard", "trigger"}.isdisjoint(before)
    assert polled["message"] == "polled shardId-0001"
    assert (polled["source"], polled["shard"]) == (3, "shardId-0001") and "trigger" not in polled
    assert back["source"] == 3 and "shard" not in back
    assert "source" not in after
    assert after["time"].endswith("+00:00")


def test_it_restores_the_context_when_the_block_raises_and_keeps_a_field_passed_by_the_caller():
    with json_lines("tests.logcontext") as lines:
        with pytest.raises(RuntimeError):
            with log_context(trigger=7):
                log.info("given", extra={"trigger": 8})
                raise RuntimeError("out")
        log.info("outside")
    given, outside = lines()
    assert given["trigger"] == 8
    assert "trigger" not in outside


def test_it_keeps_each_threads_context_apart():
    inside = threading.Event()
    done = threading.Event()

    def other():
        log.info("other before")
        with log_context(shard="shardId-other"):
            inside.set()
            done.wait(5)
            log.info("other during")

    with json_lines("tests.logcontext") as lines:
        with log_context(source=1):
            thread = threading.Thread(target=other)
            thread.start()
            inside.wait(5)
            log.info("main during")
            done.set()
            thread.join(5)

    by_message = {line["message"]: line for line in lines()}
    assert {"source", "shard"}.isdisjoint(by_message["other before"])
    assert by_message["other during"]["shard"] == "shardId-other" and "source" not in by_message["other during"]
    assert by_message["main during"]["source"] == 1 and "shard" not in by_message["main during"]


def test_it_refuses_a_field_it_does_not_know():
    with pytest.raises(ValueError, match="not table"):
        with log_context(table="orders"):
            pass

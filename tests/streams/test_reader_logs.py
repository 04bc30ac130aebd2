"""A reader's log lines name the source and shard they are about (LOG_FORMAT=json fields)."""

import pytest

from tests.support.fake_sources import numbered
from tests.support.fake_streams import FakeShard, FakeStreams, aws_error
from tests.support.logs import json_lines
from tests.support.readers import Readers

pytestmark = pytest.mark.django_db


def test_it_logs_a_failed_read_with_its_source_and_shard(fake_source):
    fake = FakeStreams([FakeShard("shardId-00001", records=numbered("k", 1))])
    source = fake_source(fake)
    fake.errors["GetRecords"] = [aws_error("AccessDeniedException", "GetRecords", "not allowed here")]
    readers = Readers(source_ids=[source.pk])
    try:
        with json_lines("streams") as lines:
            readers.until_idle(max_rounds=1)
    finally:
        readers.stop()

    [line] = [line for line in lines() if "not allowed here" in line["message"]]
    assert line["level"] == "WARNING"
    assert line["source"] == source.pk
    assert line["shard"] == "shardId-00001"
    assert "trigger" not in line

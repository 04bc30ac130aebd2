"""Stream records captured from DynamoDB Local by tests/fixtures/capture_stream_records.py."""

import json
from functools import cache
from pathlib import Path

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"


@cache
def _capture(name):
    return json.loads((FIXTURES_DIR / f"{name}.json").read_text(encoding="utf-8"))


def load_capture(name: str) -> dict:
    """The whole capture file, e.g. load_capture("getrecords_new_and_old_images"): view_type,
    table, steps, describe_stream and the raw GetRecords responses. Parsed afresh each call, so
    a test may change what it gets."""
    return json.loads(json.dumps(_capture(name)))


def load_records(name: str) -> list[dict]:
    """The wire-format records of every GetRecords page of a capture, in stream order."""
    return [record for response in load_capture(name)["responses"] for record in response["Records"]]


def record_at_step(name: str, step: str) -> dict:
    """The record written by one step of the capture script, e.g. "ship_order"."""
    capture = load_capture(name)
    records = [record for response in capture["responses"] for record in response["Records"]]
    return records[capture["steps"].index(step)]

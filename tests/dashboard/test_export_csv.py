"""The CSV export opened in a spreadsheet: no cell may be a formula (CSV or formula injection).

Excel, LibreOffice and Google Sheets read a cell as a formula when its text begins with =, +, -
or @, and OWASP's CSV Injection page (owasp.org/www-community/attacks/CSV_Injection) adds tab,
carriage return and line feed; its remedy is a single quote in front, with every field
quoted, so that a separator inside a value cannot start a cell of its own. The records here
are written to DynamoDB Local and read off its stream; their names and values carry the
triggers into the key, table and summary columns.
"""

import csv
import io
import json
import uuid

import pytest
from asgiref.sync import async_to_sync

from streams.sources import source_add
from tests.support.readers import read_until_idle
from tests.support.personas import persona_user

pytestmark = pytest.mark.django_db

# OWASP's list, and the full-width forms of the first four (U+FF1D, U+FF0B, U+FF0D, U+FF20),
# which Excel is reported to take as operators in East Asian locales.
TRIGGERS = ["=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20"]
# The key attribute: an unterminated HYPERLINK that the key's "=<value>" completes.
HYPERLINK = '=HYPERLINK("http://example.invalid/?k=","a"&"'


@pytest.fixture
def exporter(client):
    """Exporting is the Operator's (dashboard/roles.py)."""
    client.force_login(persona_user(name="exporter", role="Operator"))
    return client


@pytest.fixture
def watched(dynamodb):
    """Makes a table keyed by `key_name`, with a stream, and watches it; returns the source
    with `put(value, **attributes)` and `delete(value)`."""

    def watch(key_name, *, prefix="csv"):
        table = f"{prefix}-{uuid.uuid4().hex[:10]}"
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key_name, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key_name, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        source = source_add(table_name=table, region="us-east-1")

        def put(value, **attributes):
            item = {key_name: {"S": value}, **{name: {"S": text} for name, text in attributes.items()}}
            dynamodb.put_item(TableName=table, Item=item)

        def delete(value):
            dynamodb.delete_item(TableName=table, Key={key_name: {"S": value}})

        source.put, source.delete = put, delete
        return source

    return watch


def body_of(response) -> str:
    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)().decode()


def exported(exporter, source, fmt="csv") -> str:
    read_until_idle(source_id=source.pk)
    response = exporter.get(f"/export/records.{fmt}", {"source": source.pk})
    assert response.status_code == 200
    return body_of(response)


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def formula_cells(text: str) -> list[str]:
    """Every cell of the CSV that a spreadsheet would run, as Python's csv module splits it."""
    return [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row if cell[:1] in TRIGGERS]


def test_it_exports_a_key_attribute_named_like_a_formula_as_text(exporter, watched):
    # The smallest input.
    source = watched(HYPERLINK)
    source.put("x")

    text = exported(exporter, source)

    (row,) = rows_of(text)
    assert row["key"] == f"'{HYPERLINK}=x"
    assert formula_cells(text) == []


def test_it_exports_insert_and_remove_summaries_as_text(exporter, watched):
    # Every INSERT summary starts with +, every REMOVE with - (streams.diff.summarize).
    source = watched("pk")
    source.put("ORDER#1", status="NEW")
    source.delete("ORDER#1")

    rows = rows_of(exported(exporter, source))

    assert {row["event_name"]: row["summary"] for row in rows} == {
        "INSERT": "'+pk, +status",
        "REMOVE": "'-pk, -status",
    }


@pytest.mark.parametrize("trigger", TRIGGERS, ids=[f"U+{ord(t):04X}" for t in TRIGGERS])
def test_it_exports_a_key_starting_with_any_trigger_as_text(exporter, watched, trigger):
    source = watched(f"{trigger}k")
    source.put("v")

    text = exported(exporter, source)

    assert rows_of(text)[0]["key"] == f"'{trigger}k=v"
    assert formula_cells(text) == []


def test_it_exports_a_table_name_starting_with_minus_as_text(exporter, watched):
    # DynamoDB allows a table name to begin with - ([a-zA-Z0-9_.-]+, CreateTable API reference).
    source = watched("pk", prefix="-csv")
    source.put("ORDER#1")

    (row,) = rows_of(exported(exporter, source))

    assert row["table"] == f"'{source.table_name}"


def test_it_keeps_a_value_that_starts_with_an_apostrophe_readable_back(exporter, watched):
    # One leading apostrophe is dropped to read a cell back; a value that had one keeps it.
    source = watched("'pk")
    source.put("v")

    (row,) = rows_of(exported(exporter, source))

    assert row["key"] == "''pk=v"


def test_it_leaves_no_cell_a_spreadsheet_runs_in_any_column(exporter, watched):
    source = watched(HYPERLINK, prefix="-csv")
    source.put("a,=1+1;=2+2\t=3+3", **{"@note": "-1", "+": "=x"})
    source.put("b", status="NEW")
    source.put("b", status="=SHIPPED")
    source.delete("b")

    text = exported(exporter, source)

    assert formula_cells(text) == []
    # Every field quoted, so a separator inside a value never starts a cell (OWASP).
    rows = list(csv.reader(io.StringIO(text, newline="")))
    rewritten = io.StringIO(newline="")
    csv.writer(rewritten, quoting=csv.QUOTE_ALL).writerows(rows)
    assert rewritten.getvalue() == text
    assert len(rows) == 1 + 4


def test_it_keeps_the_ndjson_export_exact(exporter, watched):
    source = watched(HYPERLINK, prefix="-csv")
    source.put("x", note="-1")

    (line,) = [json.loads(line) for line in exported(exporter, source, "ndjson").splitlines()]

    assert (line["table"], line["key"]) == (source.table_name, f"{HYPERLINK}=x")
    assert line["summary"] == exporter.get("/api/records").json()["records"][0]["summary"]
    assert line["summary"].startswith("+")
    assert line["keys"] == {HYPERLINK: {"S": "x"}}
    assert line["new_image"] == {HYPERLINK: {"S": "x"}, "note": {"S": "-1"}}

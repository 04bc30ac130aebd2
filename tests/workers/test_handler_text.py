"""A handler's error message and response are saved whatever characters they hold: an invocation
that cannot be saved would be run again and again. PostgreSQL's text columns refuse U+0000,
which DynamoDB strings may hold (DynamoDB developer guide, "Supported data types and naming
rules": strings are Unicode with UTF-8 binary encoding) and a handler may echo."""

import pytest

from streams.codec import NUL_STAND_IN
from streams.sources import source_add
from tests.support.readers import read_until_idle
from tests.support.triggering import run_until_idle, trigger_for
from workers.models import Invocation, Outcome

pytestmark = pytest.mark.django_db


def test_it_saves_a_handlers_error_holding_nul(make_table, dynamodb):
    source = source_add(table_name=make_table(range_key=False), region="us-east-1")
    item = {"pk": {"S": "ORDER#1"}, "name": {"S": "Ann\x00Lee"}, "fail": {"BOOL": True}}
    dynamodb.put_item(TableName=source.table_name, Item=item)
    assert read_until_idle(source_id=source.pk) == 1
    trigger = trigger_for(source, "fail_quoting_name", maximum_retry_attempts=0)

    run_until_idle(trigger)

    invocation = Invocation.objects.get(trigger=trigger)
    assert invocation.outcome == Outcome.FUNCTION_ERROR
    assert invocation.error_message == f"cannot ship Ann{NUL_STAND_IN}Lee"

"""TrimmedDataAccessException on real DynamoDB Local, where it means nothing was lost.

DynamoDB Local numbers stream records from one counter shared by every table, and a shard
starts at the number the counter had when its table was created. An iterator at the start of
a shard that is still empty then fails with TrimmedDataAccessException as soon as the shard
gets a record numbered past that start: a shard iterator taken from TRIM_HORIZON or LATEST,
and every NextShardIterator after it (aws/aws-sdk-java#2923; localstack/localstack#12360
resets its poller for the same reason). Nothing was trimmed: a new TRIM_HORIZON iterator
returns the record. The rules for when a trimmed read is a gap are tested against the fake
Streams API in tests/streams/test_lineage_and_errors.py.
"""

import pytest

from streams.models import ChangeRecord, Gap, Shard, StreamSource
from streams.sources import source_add
from tests.support.readers import Readers

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("start_position", [StreamSource.StartPosition.TRIM_HORIZON, StreamSource.StartPosition.LATEST])
def test_it_claims_no_gap_for_tables_created_one_after_another(make_table, dynamodb, start_position):
    tables = [make_table(range_key=False, prefix="trim") for _ in range(3)]
    sources = [source_add(table_name=table, region="us-east-1", start_position=start_position) for table in tables]
    readers = Readers(source_ids=[source.pk for source in sources])
    try:
        readers.until_idle()  # every reader now holds an iterator on its empty shard
        for table in tables:
            dynamodb.put_item(TableName=table, Item={"pk": {"S": "first"}})
        readers.until_idle()
        for table in tables:
            dynamodb.put_item(TableName=table, Item={"pk": {"S": "second"}})
        readers.until_idle()
    finally:
        readers.stop()

    assert not Gap.objects.exists()
    for source in sources:
        stored = ChangeRecord.objects.filter(source=source).order_by("sequence_key")
        assert [record.keys for record in stored] == [{"pk": {"S": "first"}}, {"pk": {"S": "second"}}]
    assert set(Shard.objects.values_list("error_count", "last_error")) == {(0, "")}
    assert set(StreamSource.objects.values_list("status", "last_error")) == {(StreamSource.Status.ACTIVE, "")}

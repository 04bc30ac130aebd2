"""A review of masking from the outside: places a Viewer or Operator (or a token of one) could
learn a masked value through, besides the dashboard's own pages. Each test puts a secret into a
watched table under a masking rule, then asks for it the way a curious viewer would."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from streams.models import ChangeRecord, MaskingRule
from tests.support.fake_streams import FakeShard, FakeStreams, stream_record
from tests.support.readers import read_until_idle
from workers.models import DeadLetter, Invocation, Outcome, Trigger

pytestmark = pytest.mark.django_db

SECRET = "alice.secret@example.com"


@pytest.fixture
def masked(orders_table):
    """A watched table with one item whose key and email are redacted for viewers, and whose
    postal code they do not see at all."""
    MaskingRule.objects.create(source=orders_table, path="pk", mode="redact")
    MaskingRule.objects.create(source=orders_table, path="email", mode="redact")
    MaskingRule.objects.create(source=orders_table, path="postal", mode="remove")
    orders_table.put(SECRET, email=SECRET, postal="N1 9GU", status="NEW")
    assert orders_table.ingest() == 1
    orders_table.record = ChangeRecord.objects.get(source=orders_table)
    return orders_table


def _listed(response, record) -> bool:
    return f"/admin/streams/changerecord/{record.pk}/change/" in response.content.decode()


@pytest.mark.parametrize("lookup", [
    "partition_key", "partition_key__startswith", "item_key__icontains", "keys__icontains", "new_image__icontains",
    "changed_paths__icontains",
])
def test_it_finds_no_record_by_a_masked_value_through_the_admin_list(masked, viewer, lookup):
    value = {"partition_key": SECRET, "partition_key__startswith": "alice", "changed_paths__icontains": "postal"}.get(lookup, "alice")

    assert _listed(viewer.get("/admin/streams/changerecord/"), masked.record)
    assert not _listed(viewer.get("/admin/streams/changerecord/", {lookup: value}), masked.record)


def test_it_shows_no_masked_key_on_a_records_admin_history(masked, viewer):
    response = viewer.get(f"/admin/streams/changerecord/{masked.record.pk}/history/")

    assert response.status_code in (200, 302, 403, 404)
    assert "alice" not in response.content.decode()


def test_it_finds_no_invocation_or_dead_letter_by_withheld_text_through_the_admin_list(masked, operator):
    trigger = Trigger.objects.create(name="mailer", source=masked, target=Trigger.Target.PYTHON,
                                     handler="tests.handlers.basic.raising")
    invocation = Invocation.objects.create(
        trigger=trigger, first_sequence_number="1", last_sequence_number="1", record_count=1,
        record_ids=[masked.record.pk], outcome=Outcome.FUNCTION_ERROR, error_type="ValueError",
        error_message=f"bad email {SECRET}", response_body=SECRET,
    )
    letter = DeadLetter.objects.create(trigger=trigger, invocation=invocation, first_sequence_number="1",
                                       last_sequence_number="1", record_ids=[masked.record.pk], reason=f"ValueError: {SECRET}")
    invocation_url = f"/admin/workers/invocation/{invocation.pk}/change/"
    letter_url = f"/admin/workers/deadletter/{letter.pk}/change/"

    assert invocation_url in operator.get("/admin/workers/invocation/").content.decode()
    assert letter_url in operator.get("/admin/workers/deadletter/").content.decode()
    for lookup in ("error_message__icontains", "response_body__icontains"):
        assert invocation_url not in operator.get("/admin/workers/invocation/", {lookup: "alice"}).content.decode()
    assert letter_url not in operator.get("/admin/workers/deadletter/", {"reason__icontains": "alice"}).content.decode()


def test_it_masks_what_a_rule_reaches_inside_a_value_in_no_typed_form(fake_source, viewer):

    untyped_map = stream_record(sequence_number=f"{1:021d}", pk="untyped",
                                new={"profile": {"ssn": {"S": SECRET}, "name": {"S": "Al"}}})
    unknown_tag = stream_record(sequence_number=f"{2:021d}", pk="unknown",
                                new={"profile": {"Q": {"ssn": {"S": SECRET}}}})
    text_image = stream_record(sequence_number=f"{3:021d}", pk="text", new={})
    text_image["dynamodb"]["NewImage"] = f"ssn {SECRET}"
    source = fake_source(FakeStreams([FakeShard("shardId-1", records=[untyped_map, unknown_tag, text_image])]))
    MaskingRule.objects.create(source=source, path="**.ssn", mode="redact")
    read_until_idle(source_id=source.pk)

    records = list(ChangeRecord.objects.filter(source=source).order_by("sequence_key"))
    assert len(records) == 3 and all(SECRET in str(record.new_image) for record in records)
    for record in records:
        for url in (f"/api/records/{record.pk}", f"/api/records/{record.pk}/lambda-event", f"/records/{record.pk}/"):
            response = viewer.get(url)
            assert response.status_code == 200 and SECRET not in response.content.decode(), url


def test_it_answers_a_lookup_by_a_masked_key_without_reading_the_items_changes(masked, viewer):

    # An answer that reads the item's changes before saying "none" takes longer for a key that
    # is stored than for one that is not: a timing oracle for masked keys.
    with CaptureQueriesContext(connection) as queries:
        found = viewer.get(f"/api/items/{masked.pk}", {"key": masked.record.item_key}).json()
    with CaptureQueriesContext(connection) as queries_for_nothing:
        nothing = viewer.get(f"/api/items/{masked.pk}", {"key": '{"pk":{"S":"nobody"}}'}).json()

    assert found["changes"] == nothing["changes"] == []
    assert not [query for query in queries if "streams_changerecord" in query["sql"]]
    assert len(queries) == len(queries_for_nothing)

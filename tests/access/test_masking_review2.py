"""A second review of masking's filters, rules and audit (issue 12): what the first review's
changes left open. Records are written to the database directly, many at a time, which only
the scan bound of masked filtering (streams.records.PATTERN_SCAN_MAX) needs."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEntry
from streams import codec
from streams.models import ChangeRecord, MaskingRule, Shard, Stream, StreamSource, digest_item_key, sequence_key
from streams.records import PATTERN_SCAN_MAX
from tests.support.triggering import trigger_for

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def source_create(name: str) -> StreamSource:
    source = StreamSource.objects.create(
        table_name=name, region="us-east-1", key_schema=["pk"], view_type="NEW_AND_OLD_IMAGES",
        stream_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{name}/stream/1",
    )
    stream = Stream.objects.create(source=source, arn=f"{source.stream_arn}/x", label="x")
    Shard.objects.create(stream=stream, shard_id="shardId-1")
    return source


def records_write(source: StreamSource, items: list[dict]) -> list[ChangeRecord]:
    """One INSERT per item (attribute name -> typed value), saved in the order given."""
    shard = Shard.objects.get(stream__source=source)
    start = ChangeRecord.objects.filter(source=source).count()
    rows = []
    for number, item in enumerate(items, start=start + 1):
        keys = {"pk": item["pk"]}
        item_key = codec.item_key(keys)
        diff = [{"path": path, "kind": "added", "old": None, "new": value} for path, value in sorted(item.items())]
        sequence_number = f"{number:021d}"
        rows.append(ChangeRecord(
            source=source, shard=shard, sequence_number=sequence_number, sequence_key=sequence_key(sequence_number),
            event_id=f"e{number}", event_name="INSERT", approximate_creation_time=T0 + timedelta(seconds=number),
            size_bytes=64, view_type="NEW_AND_OLD_IMAGES", keys=keys, new_image=item, item_key=item_key,
            item_hash=digest_item_key(item_key), partition_key=str(codec.to_display(item["pk"])),
            changed_paths="".join(f"\n{change['path']}" for change in diff) + "\n", diff=diff,
        ))
    return ChangeRecord.objects.bulk_create(rows)


def filler(count: int, prefix: str = "OTHER") -> list[dict]:
    return [{"pk": {"S": f"{prefix}#{n}"}, "status": {"S": "plain"}} for n in range(count)]


def api_records(client, **params) -> dict:
    response = client.get("/api/records", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_it_finds_a_shown_key_past_the_scan_bound_on_a_source_whose_rules_leave_the_key_alone(viewer):
    # A rule on ssn leaves the key as stored: a viewer searching for an item by its key finds
    # it however many newer records there are, as without rules.
    orders = source_create("orders")
    MaskingRule.objects.create(source=orders, path="ssn", mode="redact")
    [wanted] = records_write(orders, [{"pk": {"S": "ORDER#1"}, "ssn": {"S": "078-05-1120"}}])
    records_write(orders, filler(PATTERN_SCAN_MAX + 10))

    for params in ({"key": "ORDER#1"}, {"key": "ORDER#", "key_match": "prefix"}):
        assert [row["id"] for row in api_records(viewer, **params)["records"]] == [wanted.pk]
    [row] = api_records(viewer, key="ORDER#1")["records"]
    assert "078-05-1120" not in json.dumps(row)


def test_it_finds_a_key_of_a_source_without_rules_past_many_newer_records_of_a_masked_source(viewer):
    plain = source_create("plain")
    [wanted] = records_write(plain, [{"pk": {"S": "ORDER#1"}, "status": {"S": "plain"}}])
    masked = source_create("masked")
    MaskingRule.objects.create(source=masked, path="ssn", mode="redact")
    records_write(masked, filler(PATTERN_SCAN_MAX + 10))

    assert [row["id"] for row in api_records(viewer, key="ORDER#1")["records"]] == [wanted.pk]


def test_it_still_finds_a_hashed_key_by_its_hash_and_never_by_the_value_it_hides(viewer):
    people = source_create("people")
    MaskingRule.objects.create(source=people, path="pk", mode="hash")
    [person] = records_write(people, [{"pk": {"S": "ann@example.com"}, "status": {"S": "plain"}}])
    [shown] = api_records(viewer, source=people.pk)["records"]
    assert shown["partition_key"].startswith(codec.MASK_HASH_PREFIX)

    assert [row["id"] for row in api_records(viewer, key=shown["partition_key"])["records"]] == [person.pk]
    assert api_records(viewer, key="ann@example.com")["records"] == []
    assert api_records(viewer, key="ann", key_match="prefix")["records"] == []


@pytest.mark.parametrize("path", ["**.pk", "**.*", "*.**", "**.**"])
def test_it_refuses_a_wildcard_rule_that_removes_a_key_attribute(path):
    source = source_create("orders")
    with pytest.raises(ValidationError) as refused:
        MaskingRule(source=source, path=path, mode="remove").full_clean()
    assert "mode" in refused.value.message_dict


def test_it_accepts_removing_an_attribute_below_every_top_level_one():
    source = source_create("orders")
    MaskingRule(source=source, path="*.ssn", mode="remove").full_clean()
    MaskingRule(source=source, path="**.ssn", mode="remove").full_clean()


def test_it_audits_an_admin_trying_a_pattern_on_the_stored_values_of_a_masked_source(admin, viewer):
    # The Admin's try matches the stored values: which records match tells them masked values,
    # as "Show unmasked" would, and is written to the audit log as that is.
    orders = source_create("orders")
    MaskingRule.objects.create(source=orders, path="ssn", mode="redact")
    records_write(orders, [{"pk": {"S": "ORDER#1"}, "ssn": {"S": "078-05-1120"}}])
    pattern = json.dumps({"dynamodb": {"NewImage": {"ssn": {"S": ["078-05-1120"]}}}})
    trigger = trigger_for(orders, "note_images_answering", filter_patterns=[pattern])
    url = f"/admin/workers/trigger/{trigger.pk}/test-pattern/"

    assert "<strong>0</strong> of 1" in viewer.get(url).content.decode()
    assert not AuditEntry.objects.filter(action="streams.changerecord.unmask").exists()
    assert "<strong>1</strong> of 1" in admin.get(url, {"last": "7"}).content.decode()

    [entry] = AuditEntry.objects.filter(action="streams.changerecord.unmask")
    assert entry.details == {"surface": "pattern_try", "path": url, "query": [["last", "7"]]}
    assert "078-05-1120" not in json.dumps(entry.details)


def test_it_does_not_audit_trying_a_pattern_on_a_source_without_rules(admin):
    orders = source_create("orders")
    records_write(orders, [{"pk": {"S": "ORDER#1"}}])
    trigger = trigger_for(orders, "note_images_answering")

    assert "<strong>1</strong> of 1" in admin.get(f"/admin/workers/trigger/{trigger.pk}/test-pattern/").content.decode()
    assert not AuditEntry.objects.filter(action="streams.changerecord.unmask").exists()


@pytest.mark.parametrize("persona", ["viewer", "operator"])
def test_it_shows_a_viewer_the_rules_and_refuses_their_changes(persona, request):
    client = request.getfixturevalue(persona)
    orders = source_create("orders")
    rule = MaskingRule.objects.create(source=orders, path="ssn", mode="redact")
    url = f"/admin/streams/streamsource/{orders.pk}/change/"

    page = client.get(url)
    assert page.status_code == 200 and "ssn" in page.content.decode()
    assert 'name="masking_rules-0-path"' not in page.content.decode()
    form = {
        "retention_days": "7", "enabled": "on",
        "masking_rules-TOTAL_FORMS": "2", "masking_rules-INITIAL_FORMS": "1",
        "masking_rules-0-id": str(rule.pk), "masking_rules-0-source": str(orders.pk),
        "masking_rules-0-path": "status", "masking_rules-0-mode": "hash", "masking_rules-0-DELETE": "on",
        "masking_rules-1-path": "other", "masking_rules-1-mode": "redact",
    }
    assert client.post(url, form).status_code == 403
    assert list(MaskingRule.objects.values_list("path", "mode")) == [("ssn", "redact")]


@pytest.mark.parametrize("query", [
    "source__records__new_image__icontains=078",
    "source__records__partition_key__startswith=ORD",
    "trigger__source__records__keys__icontains=078",
    "shard__records__new_image__icontains=078",
    "invocation__error_message__icontains=078",
])
@pytest.mark.parametrize("model", ["streams/changerecord", "workers/invocation", "workers/deadletter"])
def test_it_refuses_admin_list_lookups_that_reach_item_data_through_a_relation(model, query, admin):
    orders = source_create("orders")
    MaskingRule.objects.create(source=orders, path="ssn", mode="redact")
    records_write(orders, [{"pk": {"S": "ORDER#1"}, "ssn": {"S": "078-05-1120"}}])

    assert admin.get(f"/admin/{model}/?{query}").status_code == 400

"""Issue 12's masking, done when "for a viewer, a masked value appears on no surface, and no
filter finds it" (kafka-ui#4115 is the hole of masked values staying searchable).

Two tables are read from DynamoDB Local through the real readers. `orders` masks a top-level
attribute (card, redacted), one inside a map (profile.ssn, hashed), the elements of a list
(contacts.*, redacted) and one attribute altogether (note, removed); `people` hashes its
partition key. Every secret value holds SECRET_MARK, so one look for it covers them all; each
surface must also show a masked form (••• or hmac:), so that no test passes on an empty page."""

import json
import re

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from audit.models import AuditEntry
from config.asgi import application
from streams import codec
from streams.models import ChangeRecord, MaskingRule
from streams.records import masking_load
from streams.sources import source_add
from tests.access.test_every_url import streamed
from tests.handlers.triggers import images_seen
from tests.support.personas import PERSONAS, persona_user
from tests.support.readers import read_until_idle
from tests.support.triggering import retry_rounds, run_until_idle, trigger_for
from workers.models import DeadLetter, Invocation, TriggerCursor

pytestmark = pytest.mark.django_db

SECRET_MARK = "s3cret"
CARD = "S3CRET-card-4111"
SSN = "S3CRET-ssn-078"
CONTACT = "S3CRET-contact-555"
# Not ASCII, so that its JSON-escaped spelling differs from it.
NOTE = "S3CRET-note-Zürich"
KEY = "S3CRET-key-77"
SECRETS = [CARD, SSN, CONTACT, NOTE, KEY]
# What a masked value looks like on a page, in JSON (• escaped) and in HTML.
MASKED_FORMS = (codec.MASK_REDACTED, json.dumps(codec.MASK_REDACTED)[1:-1], codec.MASK_HASH_PREFIX)


def text_of(response) -> str:
    return (streamed(response) if getattr(response, "streaming", False) else response.content).decode()


def assert_masked(text: str, *, where: str = "") -> None:
    """No secret in any spelling, and some masked value shown."""
    lowered = text.lower()
    found = [secret for secret in SECRETS if secret.lower() in lowered or json.dumps(secret)[1:-1].lower() in lowered]
    assert SECRET_MARK not in lowered, f"{where}: {found or SECRET_MARK} in {text[max(0, lowered.find(SECRET_MARK) - 300):lowered.find(SECRET_MARK) + 100]!r}"
    assert any(form in text for form in MASKED_FORMS), f"{where}: no masked value shown"


class Masked:
    """The two sources, their records and rules."""


def write(dynamodb, table, item):
    dynamodb.put_item(TableName=table, Item=item)


@pytest.fixture
def masked(make_table, dynamodb):
    orders = source_add(table_name=make_table(range_key=False, prefix="masked"), region="us-east-1")
    for path, mode in [("card", "redact"), ("profile.ssn", "hash"), ("contacts.*", "redact"), ("note", "remove")]:
        MaskingRule.objects.create(source=orders, path=path, mode=mode)
    people = source_add(table_name=make_table(range_key=False, prefix="keyed"), region="us-east-1")
    MaskingRule.objects.create(source=people, path="pk", mode="hash")

    write(dynamodb, orders.table_name, {
        "pk": {"S": "ORDER#1"}, "status": {"S": "PLAIN-placed"}, "card": {"S": CARD}, "city": {"S": "PLAIN-Genève"},
        "profile": {"M": {"ssn": {"S": SSN}, "name": {"S": "PLAIN-Ann"}}},
        "contacts": {"L": [{"S": CONTACT}]}, "note": {"S": NOTE},
    })
    dynamodb.update_item(
        TableName=orders.table_name, Key={"pk": {"S": "ORDER#1"}},
        UpdateExpression="SET #s = :s, card = :c, profile.ssn = :ssn, contacts = :l, note = :n",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "PLAIN-shipped"}, ":c": {"S": CARD + "-v2"}, ":ssn": {"S": SSN + "-v2"},
                                   ":l": {"L": [{"S": CONTACT}, {"S": CONTACT + "-2"}]}, ":n": {"S": NOTE + "-v2"}},
    )
    write(dynamodb, people.table_name, {"pk": {"S": KEY}, "status": {"S": "PLAIN-person"}})
    assert read_until_idle(source_id=orders.pk) == 2
    assert read_until_idle(source_id=people.pk) == 1

    found = Masked()
    found.orders, found.people = orders, people
    found.inserted, found.modified = ChangeRecord.objects.filter(source=orders).order_by("id")
    found.person = ChangeRecord.objects.get(source=people)
    found.records = [found.inserted, found.modified, found.person]
    # The stored records hold the secrets: masking changes only what is shown.
    assert CARD in json.dumps(found.inserted.new_image) and found.person.partition_key == KEY
    return found


@pytest.fixture
def triggered(masked):
    """On orders: a handler that answers with the images it got, and one that fails quoting them,
    retried twice (its cursor waits on the batch), with a dead letter whose reason quotes them."""
    answering = trigger_for(masked.orders, "note_images_answering")
    run_until_idle(answering)
    failing = trigger_for(masked.orders, "fail_echoing_items", maximum_retry_attempts=-1)
    retry_rounds(failing, 2)
    masked.answering, masked.failing = answering, failing
    masked.answered = Invocation.objects.get(trigger=answering)
    masked.failed = Invocation.objects.filter(trigger=failing).order_by("-id").first()
    assert CARD in masked.answered.response_body and CARD in masked.failed.error_message
    masked.cursor = TriggerCursor.objects.get(trigger=failing)
    assert masked.cursor.attempt == 2
    masked.letter = DeadLetter.objects.create(
        trigger=failing, shard=masked.failed.shard, invocation=masked.failed,
        first_sequence_number=masked.inserted.sequence_number, last_sequence_number=masked.modified.sequence_number,
        record_ids=[masked.inserted.pk, masked.modified.pk], reason=f"the destination refused {CARD}",
    )
    return masked


def ids_in_page(text: str) -> set[int]:
    return {int(found) for found in re.findall(r'class="feed-row" data-id="(\d+)"', text)}


def ids_in_api(response) -> set[int]:
    assert response.status_code == 200, response.content[:500]
    return {row["id"] for row in response.json()["records"]}


def ids_in_export(response) -> set[int]:
    assert response.status_code == 200
    return {json.loads(line)["id"] for line in text_of(response).splitlines() if line.strip()}


# --- every surface, for the viewer ---------------------------------------------------------


def viewer_urls(m):
    orders_key = m.inserted.item_key
    urls = ["/feed/", "/history/", "/api/records", "/api/records?limit=500",
            f"/items/{m.orders.pk}/?record={m.modified.pk}", f"/items/{m.people.pk}/?record={m.person.pk}",
            (f"/items/{m.orders.pk}/", {"key": orders_key}),
            f"/api/items/{m.orders.pk}?record={m.inserted.pk}", f"/api/items/{m.people.pk}?record={m.person.pk}",
            (f"/api/items/{m.orders.pk}", {"key": orders_key})]
    for record in m.records:
        urls += [f"/records/{record.pk}/", f"/api/records/{record.pk}", f"/api/records/{record.pk}/lambda-event"]
    return urls


def test_it_shows_the_viewer_no_masked_value_on_any_record_surface(masked, viewer):
    for url in viewer_urls(masked):
        url, params = url if isinstance(url, tuple) else (url, {})
        response = viewer.get(url, params)
        assert response.status_code == 200, url
        assert_masked(text_of(response), where=url)


def test_it_shows_each_mode_as_designed_in_the_records_json(masked, viewer):
    inserted = viewer.get(f"/api/records/{masked.inserted.pk}").json()
    new = inserted["new_image"]
    assert new["card"] == {"S": codec.MASK_REDACTED}
    assert re.fullmatch(r"hmac:[0-9a-f]{16}", new["profile"]["M"]["ssn"]["S"])
    assert new["profile"]["M"]["name"] == {"S": "PLAIN-Ann"}
    assert new["contacts"] == {"L": [{"S": codec.MASK_REDACTED}]}
    assert "note" not in new and new["status"] == {"S": "PLAIN-placed"}

    modified = viewer.get(f"/api/records/{masked.modified.pk}").json()
    assert {change["path"] for change in modified["diff"]} == {"card", "contacts[1]", "profile.ssn", "status"}
    assert modified["old_image"]["profile"]["M"]["ssn"] != modified["new_image"]["profile"]["M"]["ssn"]

    person = viewer.get(f"/api/records/{masked.person.pk}").json()
    assert person["keys"]["pk"]["S"].startswith("hmac:")
    assert person["partition_key"].startswith("hmac:")
    # The item history link names the item by this record, not by its key.
    assert person["links"]["item_history"] == f"/items/{masked.people.pk}/?record={masked.person.pk}"


def test_it_shows_the_record_pages_parts_masked(masked, viewer):
    page = viewer.get(f"/records/{masked.person.pk}/").content.decode()
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert "hmac:" in title and SECRET_MARK not in title.lower()
    assert f"?record={masked.person.pk}" in page
    modified = viewer.get(f"/records/{masked.modified.pk}/").content.decode()
    detail = json.loads(re.search(r'<script id="record-data" type="application/json">(.*?)</script>', modified, re.S).group(1))
    assert detail["new_image"]["card"] == {"S": codec.MASK_REDACTED}
    assert detail["old_image"]["card"] == {"S": codec.MASK_REDACTED}


def test_it_finds_nothing_by_the_key_when_the_key_is_masked(masked, viewer):
    stored_key = masked.person.item_key
    unknown_key = codec.item_key({"pk": {"S": "nobody"}})
    for_masked = viewer.get(f"/api/items/{masked.people.pk}", {"key": stored_key})
    for_unknown = viewer.get(f"/api/items/{masked.people.pk}", {"key": unknown_key})
    assert for_masked.status_code == for_unknown.status_code == 200
    assert for_masked.json()["changes"] == for_unknown.json()["changes"] == []
    page = viewer.get(f"/items/{masked.people.pk}/", {"key": stored_key})
    assert page.status_code == 200 and f"/records/{masked.person.pk}/" not in page.content.decode()
    # Not an empty source: by its record, the viewer opens the item, key masked.
    by_record = viewer.get(f"/api/items/{masked.people.pk}", {"record": masked.person.pk}).json()
    assert [change["id"] for change in by_record["changes"]] == [masked.person.pk]


def test_it_exports_masked_rows_to_the_operator(masked, operator):
    for fmt in ("ndjson", "csv"):
        response = operator.get(f"/export/records.{fmt}")
        text = text_of(response)
        assert response.status_code == 200
        assert_masked(text, where=fmt)
        for record in masked.records:
            assert str(record.pk) in text
    entry = AuditEntry.objects.filter(action="streams.changerecord.export").latest("id")
    assert entry.details["unmasked"] is False


def test_it_withholds_handler_text_on_the_trigger_pages(triggered, viewer):
    from streams.masking import WITHHELD

    urls = [f"/invocations/{triggered.answered.pk}/", f"/invocations/{triggered.failed.pk}/", "/triggers/timeline/",
            f"/triggers/timeline/?trigger={triggered.failing.pk}", "/api/invocations", "/triggers/dead-letters/",
            f"/triggers/cursors/{triggered.cursor.pk}/"]
    for url in urls:
        response = viewer.get(url)
        text = text_of(response)
        assert response.status_code == 200, url
        assert SECRET_MARK not in text.lower(), (url, text[text.lower().find(SECRET_MARK) - 300:][:400])
        assert WITHHELD in text or json.dumps(WITHHELD)[1:-1] in text, url
    # The invocation's payload is there, masked.
    assert_masked(viewer.get(f"/invocations/{triggered.answered.pk}/").content.decode(), where="invocation payload")
    api = viewer.get("/api/invocations").json()["invocations"]
    assert {row["error_message"] for row in api if row["outcome"] != "success"} == {WITHHELD}


def test_it_shows_the_viewer_no_secret_on_the_other_pages_naming_records(triggered, viewer):
    for url in ["/", "/triggers/", "/alerts/", f"/admin/workers/trigger/{triggered.answering.pk}/test-pattern/",
                f"/admin/workers/trigger/{triggered.failing.pk}/test-pattern/"]:
        response = viewer.get(url)
        assert response.status_code == 200, url
        assert SECRET_MARK not in response.content.decode().lower(), url


def test_it_keeps_handler_text_from_the_admin_pages(triggered, admin):
    urls = [f"/admin/workers/invocation/{triggered.answered.pk}/change/", f"/admin/workers/invocation/{triggered.failed.pk}/change/",
            "/admin/workers/invocation/", f"/admin/workers/deadletter/{triggered.letter.pk}/change/", "/admin/workers/deadletter/",
            f"/admin/workers/trigger/{triggered.failing.pk}/test-pattern/"]
    for url in urls:
        response = admin.get(url)
        assert response.status_code == 200, url
        assert SECRET_MARK not in response.content.decode().lower(), url


def test_it_leads_the_record_admin_to_the_dashboards_record_page(masked, admin):
    response = admin.get(f"/admin/streams/changerecord/{masked.inserted.pk}/change/")
    assert response.status_code == 302
    assert response["Location"] == f"/records/{masked.inserted.pk}/"
    listing = admin.get("/admin/streams/changerecord/")
    assert listing.status_code == 200 and SECRET_MARK not in listing.content.decode().lower()


# --- filters find no masked value -----------------------------------------------------------


def filters_on_secrets():
    """(name, query parameters) that name masked values only."""
    card_pattern = json.dumps({"dynamodb": {"NewImage": {"card": {"S": [CARD]}}}})
    return [
        ("text on a redacted attribute", {"q": CARD}),
        ("text on a hashed nested attribute", {"q": SSN}),
        ("text on a list element", {"q": CONTACT}),
        ("text on a removed attribute", {"q": "S3CRET-note"}),
        ("text on a masked key", {"q": KEY}),
        ("text on all of them", {"q": "s3cret"}),
        ("key equals", {"key": KEY}),
        ("key prefix", {"key": "S3CRET", "key_match": "prefix"}),
        ("path of a removed attribute", {"path": "note"}),
        ("pattern on a redacted value", {"pattern": card_pattern}),
        ("pattern prefix on a redacted value", {"pattern": json.dumps({"dynamodb": {"NewImage": {"card": {"S": [{"prefix": "S3CRET"}]}}}})}),
        ("pattern on a hashed nested value", {"pattern": json.dumps({"dynamodb": {"NewImage": {"profile": {"M": {"ssn": {"S": [SSN]}}}}}})}),
        ("pattern on a removed attribute", {"pattern": json.dumps({"dynamodb": {"NewImage": {"note": {"S": [{"exists": True}]}}}})}),
        ("pattern on a masked key", {"pattern": json.dumps({"dynamodb": {"Keys": {"pk": {"S": [KEY]}}}})}),
    ]


def filters_on_plain(m):
    """(name, query parameters, the records they must find): the same filters on unmasked values."""
    orders = {m.inserted.pk, m.modified.pk}
    # The person's key as a viewer sees it: a hash finds what it stands for.
    shown_key = masking_load().value_hash({"S": KEY})["S"]
    return [
        ("text", {"q": "PLAIN-Ann"}, orders),
        # Not ASCII: ingest stores it as it is, and the masked record's text must find it too.
        ("text not in ASCII", {"q": "Genève"}, orders),
        ("key equals a hash shown", {"key": shown_key}, {m.person.pk}),
        ("key prefix of a hash shown", {"key": shown_key[:10], "key_match": "prefix"}, {m.person.pk}),
        ("text of a hash shown", {"q": shown_key}, {m.person.pk}),
        ("text on the person", {"q": "PLAIN-person"}, {m.person.pk}),
        ("key equals", {"key": "ORDER#1"}, orders),
        ("key prefix", {"key": "ORDER", "key_match": "prefix"}, orders),
        ("path", {"path": "status"}, {*orders, m.person.pk}),
        ("path of a map holding a masked value", {"path": "profile"}, orders),
        ("path of a redacted attribute", {"path": "card"}, orders),
        ("pattern", {"pattern": json.dumps({"dynamodb": {"NewImage": {"status": {"S": ["PLAIN-shipped"]}}}})}, {m.modified.pk}),
        ("pattern on a masked attribute's presence", {"pattern": json.dumps({"dynamodb": {"NewImage": {"card": {"S": [{"exists": True}]}}}})}, orders),
    ]


@pytest.mark.parametrize(("name", "params"), filters_on_secrets(), ids=[name for name, _ in filters_on_secrets()])
def test_it_finds_no_masked_value_by_any_filter(masked, viewer, operator, name, params):
    assert ids_in_page(viewer.get("/feed/", params).content.decode()) == set()
    assert ids_in_page(viewer.get("/history/", params).content.decode()) == set()
    assert ids_in_api(viewer.get("/api/records", params)) == set()
    assert ids_in_export(operator.get("/export/records.ndjson", params)) == set()


def test_it_finds_unmasked_values_by_the_same_filters(masked, viewer, operator):
    for name, params, expected in filters_on_plain(masked):
        assert ids_in_page(viewer.get("/feed/", params).content.decode()) == expected, name
        assert ids_in_api(viewer.get("/api/records", params)) == expected, name
        assert ids_in_export(operator.get("/export/records.ndjson", params)) == expected, name


def test_it_finds_masked_values_for_an_admin_who_asks_unmasked(masked, admin):
    orders = {masked.inserted.pk, masked.modified.pk}
    for params, expected in [({"q": CARD}, orders), ({"key": KEY}, {masked.person.pk}), ({"path": "note"}, orders),
                             ({"q": "S3CRET-note"}, orders)]:
        assert ids_in_api(admin.get("/api/records", {**params, "unmasked": "1"})) == expected, params
        assert ids_in_export(admin.get("/export/records.ndjson", {**params, "unmasked": "1"})) == expected, params
        # Masked by default, for Admins too.
        assert ids_in_api(admin.get("/api/records", params)) == set(), params


# --- unmasking ------------------------------------------------------------------------------


def unmask_entries():
    return list(AuditEntry.objects.filter(action="streams.changerecord.unmask").order_by("id"))


def test_it_shows_an_admin_masked_data_until_asked_and_audits_each_unmasked_view(masked, admin):
    page = admin.get(f"/records/{masked.inserted.pk}/").content.decode()
    assert_masked(page, where="admin default")
    assert 'id="unmask-on"' in page
    assert unmask_entries() == []

    unmasked = admin.get(f"/records/{masked.inserted.pk}/", {"unmasked": "1"})

    text = unmasked.content.decode()
    assert unmasked.status_code == 200
    assert CARD in text and json.dumps(SSN)[1:-1] in text
    assert 'id="unmask-banner"' in text
    [entry] = unmask_entries()
    assert entry.actor == "admin"
    assert entry.details == {"surface": "record", "path": f"/records/{masked.inserted.pk}/", "query": [["unmasked", "1"]]}
    admin.get("/history/", {"key": "ORDER#1", "source": masked.orders.pk, "unmasked": "1"})
    latest = AuditEntry.objects.filter(action="streams.changerecord.unmask").latest("id")
    assert latest.details["query"] == [["key", "<given>"], ["source", str(masked.orders.pk)], ["unmasked", "1"]]

    api = admin.get(f"/api/records/{masked.person.pk}", {"unmasked": "1"}).json()
    assert api["partition_key"] == KEY
    assert len(unmask_entries()) == 3


@pytest.mark.parametrize("persona", ["viewer", "operator"])
def test_it_refuses_unmasked_data_to_who_may_not_see_it(request, masked, persona):
    client = request.getfixturevalue(persona)
    for url in [f"/records/{masked.inserted.pk}/", "/feed/", "/history/", f"/items/{masked.orders.pk}/?record={masked.inserted.pk}"]:
        response = client.get(url, {"unmasked": "1"})
        assert response.status_code == 403, url
        assert SECRET_MARK not in response.content.decode().lower()
    for url in [f"/api/records/{masked.inserted.pk}", "/api/records", f"/api/records/{masked.inserted.pk}/lambda-event",
                f"/api/items/{masked.orders.pk}?record={masked.inserted.pk}", "/api/invocations"]:
        response = client.get(url, {"unmasked": "1"})
        assert response.status_code == 403, url
        assert "error" in response.json() and SECRET_MARK not in response.content.decode().lower()
    assert unmask_entries() == []


def test_it_refuses_an_unmasked_export_to_the_operator(masked, operator):
    response = operator.get("/export/records.ndjson", {"unmasked": "1"})
    assert response.status_code == 403
    assert SECRET_MARK not in text_of(response).lower()


# --- triggers get real data -----------------------------------------------------------------


def test_it_gives_triggers_the_unmasked_items(masked):
    run_until_idle(trigger_for(masked.orders, "note_images_answering"))

    first, second = images_seen()
    assert first["card"] == {"S": CARD} and first["note"] == {"S": NOTE}
    assert first["profile"]["M"]["ssn"] == {"S": SSN} and first["contacts"] == {"L": [{"S": CONTACT}]}
    assert second["card"] == {"S": CARD + "-v2"}


# --- rules in the admin ---------------------------------------------------------------------


def source_form(source, rules, *, initial=()):
    """The source change form's post: its fields as they are, and the inline formset of rules.
    `initial` are the saved rules shown first (each may carry "DELETE")."""
    data = {"retention_days": str(source.retention_days), "masking_rules-TOTAL_FORMS": str(len(initial) + len(rules)),
            "masking_rules-INITIAL_FORMS": str(len(initial)), "masking_rules-MIN_NUM_FORMS": "0",
            "masking_rules-MAX_NUM_FORMS": "1000"}
    if source.enabled:
        data["enabled"] = "on"
    for index, rule in enumerate([*initial, *rules]):
        for name, value in rule.items():
            data[f"masking_rules-{index}-{name}"] = value
        data[f"masking_rules-{index}-source"] = str(source.pk)
    return data


def test_it_audits_a_rule_added_and_deleted_in_the_admin(masked, admin):
    source = masked.people
    response = admin.post(f"/admin/streams/streamsource/{source.pk}/change/", source_form(
        source, [{"path": "status", "mode": "redact"}],
        initial=[{"id": str(MaskingRule.objects.get(source=source).pk), "path": "pk", "mode": "hash"}]))
    assert response.status_code == 302, response.content.decode()[-3000:]
    added = MaskingRule.objects.get(source=source, path="status")
    entry = AuditEntry.objects.filter(action="streams.maskingrule.add").latest("id")
    assert entry.actor == "admin" and entry.target_id == str(added.pk)
    assert entry.after["path"] == "status" and entry.after["mode"] == "redact"
    assert admin.get(f"/api/records/{masked.person.pk}").json()["new_image"]["status"] == {"S": codec.MASK_REDACTED}

    rules = list(MaskingRule.objects.filter(source=source).order_by("path"))
    response = admin.post(f"/admin/streams/streamsource/{source.pk}/change/", source_form(
        source, [], initial=[{"id": str(rule.pk), "path": rule.path, "mode": rule.mode, **({"DELETE": "on"} if rule.path == "status" else {})}
                             for rule in rules]))
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert list(MaskingRule.objects.filter(source=source).values_list("path", flat=True)) == ["pk"]
    deleted = AuditEntry.objects.filter(action="streams.maskingrule.delete").latest("id")
    assert deleted.actor == "admin" and deleted.target_id == str(added.pk)
    assert admin.get(f"/api/records/{masked.person.pk}").json()["new_image"]["status"] == {"S": "PLAIN-person"}


@pytest.mark.parametrize(("path", "message"), [
    ("card*", "* and ** stand alone as a segment"),
    ("items[x]", "must be a list index"),
    ("a..b", "Empty name at character 3"),
])
def test_it_explains_an_unreadable_rule_path_in_the_admin_form(masked, admin, path, message):
    source = masked.people
    before = AuditEntry.objects.count()
    response = admin.post(f"/admin/streams/streamsource/{source.pk}/change/", source_form(
        source, [{"path": path, "mode": "redact"}],
        initial=[{"id": str(MaskingRule.objects.get(source=source).pk), "path": "pk", "mode": "hash"}]))
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page.replace("&#x27;", "'").replace("&quot;", '"')
    assert "errorlist" in page
    assert not MaskingRule.objects.filter(source=source, path=path).exists()
    assert AuditEntry.objects.count() == before


def test_it_refuses_a_rule_removing_a_key_attribute_and_redacts_one_already_stored(masked, admin, viewer):
    source = masked.people
    pk_rule = MaskingRule.objects.get(source=source)
    response = admin.post(f"/admin/streams/streamsource/{source.pk}/change/", source_form(
        source, [], initial=[{"id": str(pk_rule.pk), "path": "pk", "mode": "remove"}]))
    assert response.status_code == 200
    assert "A key attribute cannot be removed" in response.content.decode()
    assert MaskingRule.objects.get(pk=pk_rule.pk).mode == "hash"

    # Written other than through the form, it leaves the key redacted, so the item still has one.
    MaskingRule.objects.filter(pk=pk_rule.pk).update(mode="remove")
    detail = viewer.get(f"/api/records/{masked.person.pk}").json()
    assert detail["keys"] == {"pk": {"S": codec.MASK_REDACTED}} and "pk" not in detail["new_image"]
    item = viewer.get(f"/api/items/{source.pk}", {"record": masked.person.pk}).json()
    assert item["key"] == f"pk={codec.MASK_REDACTED}" and len(item["changes"]) == 1


# --- alerts ---------------------------------------------------------------------------------


def test_it_keeps_the_secret_out_of_alerts_on_a_failing_trigger(triggered, admin):
    from datetime import timedelta

    from django.utils import timezone

    from alerts.models import AlertState, AlertTransition, Channel, Rule
    from tests.support.alert_receivers import alert_receiver
    from tests.support.alerting import evaluate_and_send

    with alert_receiver() as receiver:
        channel = Channel.objects.create(name="slack", kind=Channel.Kind.SLACK, url=receiver.url + "/slack")
        for condition, threshold in [(Rule.Condition.POISON_RECORD, 1), (Rule.Condition.TRIGGER_ERROR_RATE, 1),
                                     (Rule.Condition.DEAD_LETTERS, 0)]:
            rule = Rule.objects.create(name=f"r-{condition}", condition=condition, trigger=triggered.failing,
                                       threshold=threshold, window_s=3600)
            rule.channels.set([channel])
        evaluate_and_send(now=timezone.now() + timedelta(seconds=1))
        sent = [request["body"].decode() for request in receiver.received]

    states = list(AlertState.objects.select_related("rule"))
    assert {state.rule.condition for state in states} == {"poison_record", "trigger_error_rate", "dead_letters"}
    assert all(state.status == AlertState.Status.FIRING for state in states)
    assert len(sent) == 3
    texts = [state.summary + json.dumps(state.details) for state in states]
    texts += [transition.summary + json.dumps(transition.details) for transition in AlertTransition.objects.all()]
    texts += sent
    assert all(SECRET_MARK not in text.lower() for text in texts)
    # The poison-record alert names the error's type, so it is about this failure.
    assert any("ValueError" in text for text in sent)
    page = admin.get("/alerts/").content.decode()
    assert "ValueError" in page and SECRET_MARK not in page.lower()


# --- sockets --------------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://localhost")
HOST = (b"host", b"localhost")


def socket_headers(persona):
    client = Client()
    client.force_login(persona_user(name=f"{persona}-socket", role=PERSONAS[persona]))
    return [HOST, ORIGIN, (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())]


def feed_socket(headers, *, subscribe: dict, act, expect: int = 1):
    """Opens the live feed, subscribes, runs `act` (in a thread: it writes and reads the stream),
    and returns every message after the subscription ack, and the ack itself."""

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/feed/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "subscribe", "filter": subscribe})
        first = [await communicator.receive_json_from(timeout=5)]
        if first[0]["type"] == "error":
            first.append(await communicator.receive_json_from(timeout=5))
        await sync_to_async(act)()
        messages = []
        for _ in range(expect):
            messages.append(await communicator.receive_json_from(timeout=10))
        assert await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return first, messages

    return async_to_sync(scenario)()


@pytest.fixture
def live_sources(make_table, dynamodb):
    """A masked and a keyed source with no records yet, and `push()`, which writes to both tables
    and reads them, so the readers publish the batches to the feed socket."""
    orders = source_add(table_name=make_table(range_key=False, prefix="livemasked"), region="us-east-1")
    for path, mode in [("card", "redact"), ("profile.ssn", "hash"), ("contacts.*", "redact"), ("note", "remove")]:
        MaskingRule.objects.create(source=orders, path=path, mode=mode)
    people = source_add(table_name=make_table(range_key=False, prefix="livekeyed"), region="us-east-1")
    MaskingRule.objects.create(source=people, path="pk", mode="hash")
    read_until_idle(source_id=orders.pk)
    read_until_idle(source_id=people.pk)

    def push():
        write(dynamodb, orders.table_name, {
            "pk": {"S": "ORDER#1"}, "status": {"S": "PLAIN-placed"}, "card": {"S": CARD}, "city": {"S": "PLAIN-Genève"},
            "profile": {"M": {"ssn": {"S": SSN}}}, "contacts": {"L": [{"S": CONTACT}]}, "note": {"S": NOTE},
        })
        write(dynamodb, people.table_name, {"pk": {"S": KEY}, "status": {"S": "PLAIN-person"}})
        read_until_idle(source_id=orders.pk)
        read_until_idle(source_id=people.pk)

    class Live:
        pass

    live = Live()
    live.orders, live.people, live.push = orders, people, push
    return live


@pytest.mark.django_db(transaction=True)
def test_it_pushes_masked_rows_on_the_live_feed(live_sources):
    _, messages = feed_socket(socket_headers("viewer"), subscribe={}, act=live_sources.push, expect=2)
    text = json.dumps(messages, ensure_ascii=False)
    assert_masked(text, where="feed socket")
    rows = [row for message in messages for row in message["records"]]
    assert {row["source_id"] for row in rows} == {live_sources.orders.pk, live_sources.people.pk}
    assert "note" not in {path for row in rows for path in row["paths"]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("name", "subscribe"), [
    ("text", {"q": CARD}),
    ("text on a removed attribute", {"q": "S3CRET-note"}),
    ("key", {"key": KEY}),
    ("key prefix", {"key": "S3CRET", "key_match": "prefix"}),
    ("path of a removed attribute", {"path": "note"}),
    ("pattern", {"pattern": json.dumps({"dynamodb": {"NewImage": {"card": {"S": [CARD]}}}})}),
    ("pattern on a masked key", {"pattern": json.dumps({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "S3CRET"}]}}}})}),
])
def test_it_pushes_nothing_for_a_filter_on_masked_values(live_sources, name, subscribe):
    _, messages = feed_socket(socket_headers("viewer"), subscribe=subscribe, act=live_sources.push, expect=0)
    assert messages == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("subscribe", "source"), [
    ({"q": "PLAIN-placed"}, "orders"),
    ({"key": "ORDER#1"}, "orders"),
    ({"path": "contacts"}, "orders"),
    ({"pattern": json.dumps({"dynamodb": {"NewImage": {"status": {"S": ["PLAIN-person"]}}}})}, "people"),
])
def test_it_pushes_rows_for_a_filter_on_unmasked_values(live_sources, subscribe, source):
    _, [message] = feed_socket(socket_headers("viewer"), subscribe=subscribe, act=live_sources.push)
    assert [row["source_id"] for row in message["records"]] == [getattr(live_sources, source).pk]
    assert SECRET_MARK not in json.dumps(message, ensure_ascii=False).lower()


@pytest.mark.django_db(transaction=True)
def test_it_answers_a_viewer_asking_the_socket_for_unmasked_rows_with_an_error_and_masked_rows(live_sources):
    first, messages = feed_socket(socket_headers("viewer"), subscribe={"unmasked": "1"}, act=live_sources.push, expect=2)
    assert first[0]["type"] == "error" and "Admin" in first[0]["message"]
    assert first[1]["type"] == "subscribed"
    assert_masked(json.dumps(messages, ensure_ascii=False), where="feed socket, refused unmask")
    assert not AuditEntry.objects.filter(action="streams.changerecord.unmask").exists()


@pytest.mark.django_db(transaction=True)
def test_it_pushes_unmasked_rows_to_an_admin_who_asks_and_audits_it(live_sources, settings):
    # Behind a proxy that sets X-Forwarded-For, the entry names the browser's address.
    settings.AUDIT_TRUST_X_FORWARDED_FOR = True
    headers = [*socket_headers("admin"), (b"x-forwarded-for", b"203.0.113.9")]
    first, messages = feed_socket(headers, subscribe={"key": KEY, "unmasked": "1"}, act=live_sources.push)
    assert [item["type"] for item in first] == ["subscribed"]
    [row] = messages[0]["records"]
    assert row["partition_key"] == KEY
    [entry] = AuditEntry.objects.filter(action="streams.changerecord.unmask")
    assert entry.details["surface"] == "feed_socket" and entry.address == "203.0.113.9"
    # Which filter, never the key it was given.
    assert entry.details["query"] == [["key", "<given>"], ["unmasked", "1"]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("persona", ["viewer", "admin"])
def test_it_withholds_handler_errors_on_the_invocations_socket(live_sources, persona):
    from streams.masking import WITHHELD

    def write_and_fail():
        live_sources.push()
        trigger = trigger_for(live_sources.orders, "fail_echoing_items", maximum_retry_attempts=0)
        retry_rounds(trigger, 1)

    headers = socket_headers(persona)

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/invocations/", headers=headers)
        assert (await communicator.connect())[0]
        await communicator.send_json_to({"type": "subscribe", "trigger": None, "outcome": "", "unmasked": "1"})
        answers = [await communicator.receive_json_from(timeout=5)]
        if answers[0]["type"] == "error":
            answers.append(await communicator.receive_json_from(timeout=5))
        await sync_to_async(write_and_fail)()
        message = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return answers, message

    answers, message = async_to_sync(scenario)()
    [row] = message["invocations"]
    assert Invocation.objects.get(pk=row["id"]).error_message.count(CARD) == 1
    if persona == "viewer":
        assert [answer["type"] for answer in answers] == ["error", "subscribed"]
        assert row["error_message"] == WITHHELD
        assert SECRET_MARK not in json.dumps(message).lower()
    else:
        # Asked and allowed: the handler's own words, audited.
        assert [answer["type"] for answer in answers] == ["subscribed"]
        assert CARD in row["error_message"]
        assert AuditEntry.objects.filter(action="streams.changerecord.unmask", details__surface="invocations_socket").count() == 1


def test_it_tries_a_triggers_pattern_on_masked_values_for_a_viewer(masked, viewer, admin):
    # A pattern on a masked attribute: which records it matches would tell a viewer the value.
    trigger = trigger_for(masked.orders, "note_images_answering",
                          filter_patterns=[json.dumps({"dynamodb": {"NewImage": {"card": {"S": [{"prefix": "S3CRET-card"}]}}}})])
    url = f"/admin/workers/trigger/{trigger.pk}/test-pattern/"

    as_viewer = viewer.get(url).content.decode()
    as_admin = admin.get(url).content.decode()

    assert re.search(r"<strong>0</strong> of 2 would be sent", as_viewer)
    assert 'id="pattern-try-masked"' in as_viewer
    # The admin tries it on the stored data, as the trigger will, and still sees no value.
    assert re.search(r"<strong>2</strong> of 2 would be sent", as_admin)
    assert 'id="pattern-try-masked"' not in as_admin
    assert not [secret for secret in SECRETS if secret in as_viewer + as_admin]


def test_it_marks_a_masked_key_on_the_record_page(masked, viewer):
    page = viewer.get(f"/records/{masked.person.pk}/").content.decode()

    assert re.search(r'<span class="key-value masked">hmac:[0-9a-f]{16}</span>', page)


def test_it_links_the_changes_of_an_item_whose_key_is_masked(masked, dynamodb, viewer):
    write(dynamodb, masked.people.table_name, {"pk": {"S": KEY}, "status": {"S": "PLAIN-moved"}})
    assert read_until_idle(source_id=masked.people.pk) == 1
    later = ChangeRecord.objects.filter(source=masked.people).order_by("id").last()

    earlier_page = viewer.get(f"/records/{masked.person.pk}/").content.decode()
    later_page = viewer.get(f"/records/{later.pk}/").content.decode()

    assert f'href="/records/{later.pk}/" rel="next"' in earlier_page
    assert f'href="/records/{masked.person.pk}/" rel="prev"' in later_page
    assert_masked(later_page, where="record page of the later change")

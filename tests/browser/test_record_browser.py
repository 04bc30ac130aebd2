"""The record detail, item history and history pages in Chromium, on records written to
DynamoDB Local and read from its stream: the diff they draw, copying, and escaping."""

import json
import re

import pytest
from playwright.sync_api import expect

from audit.models import AuditEntry
from streams.models import ChangeRecord
from streams.records import masking_load
from streams.sources import source_add
from tests.browser.conftest import ingest, install_xss_tripwire, screenshot, xss_fired

IMG = "<img src=x onerror=__xss()>"
SCRIPT = '"><script>__xss()</script>'


@pytest.fixture
def csp_bypassed():
    """Asked for by the escaping tests: their pages run without the Content-Security-Policy,
    which would otherwise stop a payload that a page failed to escape (see install_xss_tripwire)."""


@pytest.fixture
def browser_context_args(request) -> dict:
    args = {"permissions": ["clipboard-read", "clipboard-write"]}
    if "csp_bypassed" in request.fixturenames:
        args["bypass_csp"] = True
    return args


@pytest.fixture
def order(live_server_url, make_table, dynamodb):
    """One order placed, then changed in one update_item: qty from N 1 to S "1", a tag added and
    one removed, a nested city changed and a nested attribute added; then shipped."""
    table = make_table(prefix="orders")
    source = source_add(table_name=table, region="us-east-1")
    key = {"pk": {"S": "ORDER#1"}, "sk": {"N": "1"}}
    dynamodb.put_item(
        TableName=table,
        Item={
            **key,
            "status": {"S": "PENDING"},
            "qty": {"N": "1"},
            "tags": {"SS": ["gift", "new"]},
            "address": {"M": {"city": {"S": "Paris"}, "lines": {"L": [{"S": "1 rue de Rivoli"}]}}},
        },
    )
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET qty = :qty, tags = :tags, address.city = :city, address.floor = :floor",
        ExpressionAttributeValues={
            ":qty": {"S": "1"},
            ":tags": {"SS": ["gift", "priority"]},
            ":city": {"S": "Lyon"},
            ":floor": {"N": "3"},
        },
    )
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "SHIPPED"}},
    )
    assert ingest(source) == 3
    return list(ChangeRecord.objects.filter(source=source).order_by("sequence_key"))


def test_it_shows_what_the_stream_sent_in_the_raw_view_of_a_reshaped_record(logged_in_page, make_table, dynamodb):
    # DynamoDB Local 3.x sends an empty map as a bare {} (awslabs/amazon-dynamodb-local-samples#37);
    # the record is stored as AWS sends it, and the raw view shows what the stream sent.
    table = make_table(range_key=False, prefix="shapes")
    source = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "e1"}, "m": {"M": {}}, "l": {"L": [{"M": {}}]}})
    assert ingest(source) == 1
    record = ChangeRecord.objects.get(source=source)
    page = logged_in_page

    open_record(page, record.pk)

    expect(page.locator("#reshaped-note")).to_contain_text("NewImage")
    expect(tree_node(page, "new", "m")).to_contain_text("(empty map)")
    expect(tree_node(page, "new", "l[0]")).to_contain_text("(empty map)")
    page.get_by_role("button", name="Raw DynamoDB JSON").click()
    raw = json.loads(page.locator("#raw-json").inner_text())
    assert raw["dynamodb"]["NewImage"] == {"pk": {"S": "e1"}, "m": {}, "l": {"L": [{}]}}
    assert raw["dynamodb"]["Keys"] == {"pk": {"S": "e1"}}
    assert record.new_image == {"pk": {"S": "e1"}, "m": {"M": {}}, "l": {"L": [{"M": {}}]}}


def open_record(page, record_id):
    page.goto(f"/records/{record_id}/")
    page.wait_for_selector("#record[data-ready='true']")


def change_line(page, path):
    return page.locator(f"#changes li.change[data-path='{path}']")


def tree_node(page, side, path):
    return page.locator(f"[data-image='{side}'] li.node[data-path='{path}']")


def test_it_shows_the_diff_of_an_update_with_type_set_and_nested_changes(logged_in_page, order):
    page = logged_in_page
    insert, modify, shipped = order
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    open_record(page, modify.pk)

    expect(page.locator("#changes li.change")).to_have_count(4)
    expect(change_line(page, "qty")).to_have_attribute("data-kind", "type_changed")
    expect(change_line(page, "qty").locator(".change-detail")).to_have_text('N 1 → S "1"')
    expect(change_line(page, "tags").locator(".member-added")).to_have_text('+{"priority"}')
    expect(change_line(page, "tags").locator(".member-removed")).to_have_text('-{"new"}')
    expect(change_line(page, "address.city").locator(".change-detail")).to_have_text('S "Paris" → "Lyon"')
    expect(change_line(page, "address.floor")).to_have_attribute("data-kind", "added")
    # The old image marks what went away or changed; the new one what arrived or changed.
    expect(tree_node(page, "old", "qty")).to_have_class("node hl-changed")
    expect(tree_node(page, "new", "qty")).to_contain_text('qty S "1" was N')
    expect(tree_node(page, "old", "tags").locator(".member-removed")).to_have_text('"new"')
    expect(tree_node(page, "new", "tags").locator(".member-added")).to_have_text('"priority"')
    expect(tree_node(page, "new", "tags").locator(".member:not(.member-added)")).to_have_text('"gift"')
    expect(tree_node(page, "new", "address.city")).to_have_class("node hl-changed")
    expect(tree_node(page, "new", "address.floor")).to_have_class("node hl-added")
    expect(tree_node(page, "new", "address")).to_have_class("node hl-within")
    expect(tree_node(page, "new", "address.lines[0]")).to_have_class("node")
    expect(tree_node(page, "new", "status")).to_have_class("node")
    expect(page.locator("[data-image='old'] .hl-added")).to_have_count(0)
    expect(page.locator("#diff-partial")).to_have_count(0)
    screenshot(page, "record")

    # A path in the list points at its nodes in both images.
    change_line(page, "address.city").get_by_role("button").click()
    expect(page.locator(".node.focused")).to_have_count(2)

    page.get_by_role("button", name="Raw DynamoDB JSON").click()
    expect(page.locator("#diff-view")).to_be_hidden()
    raw = json.loads(page.locator("#raw-json").inner_text())
    assert raw["eventID"] == modify.event_id
    assert raw["dynamodb"]["OldImage"]["qty"] == {"N": "1"}
    assert raw["dynamodb"]["NewImage"]["qty"] == {"S": "1"}
    assert raw["dynamodb"]["SequenceNumber"] == modify.sequence_number
    screenshot(page, "record-raw")

    page.get_by_role("button", name="Copy as JSON").click()
    expect(page.locator("#copy-status")).to_have_text("Copied the record as JSON.")
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == raw

    page.get_by_role("button", name="Copy as Lambda test event").click()
    expect(page.locator("#copy-status")).to_have_text("Copied the Lambda test event.")
    event = json.loads(page.evaluate("navigator.clipboard.readText()"))
    assert event["Records"][0]["eventSource"] == "aws:dynamodb"
    assert event["Records"][0]["eventSourceARN"] == modify.shard.stream.arn
    with page.expect_download() as download:
        page.locator("#download-lambda").click()
    assert download.value.suggested_filename == f"lambda-event-{modify.pk}.json"
    assert json.loads(open(download.value.path()).read()) == event

    expect(page.locator("#link-previous")).to_have_attribute("href", f"/records/{insert.pk}/")
    page.locator("#link-next").click()
    page.wait_for_selector("#record[data-ready='true']")
    expect(page.locator("#sequence-number")).to_have_text(shipped.sequence_number)
    # Under the site's Content-Security-Policy: nothing was refused and no script failed.
    assert errors == []


def test_it_shows_an_items_state_after_any_change(logged_in_page, order):
    page = logged_in_page
    insert, modify, shipped = order
    open_record(page, modify.pk)

    page.locator("#link-item-history").click()
    page.wait_for_selector("#item[data-ready='true']")

    expect(page.locator(".item-change")).to_have_count(3)
    expect(page.locator(".item-change.selected")).to_have_id(f"change-{shipped.pk}")
    expect(page.locator("#state-body li.node[data-path='status']")).to_have_class("node hl-changed")
    page.locator(f"#change-{insert.pk} .show-state").click()
    expect(page.locator("#state-title")).to_contain_text("State after change 1 (INSERT")
    expect(page.locator("#state-body li.node[data-path='qty']")).to_contain_text("qty N 1")
    page.locator(f"#change-{modify.pk} .show-state").click()
    expect(page.locator("#state-body li.node[data-path='qty']")).to_contain_text('qty S "1"')
    expect(page.locator(f"#change-{modify.pk} li.change[data-path='qty'] .change-detail")).to_have_text('N 1 → S "1"')
    assert page.url.endswith(f"#change-{modify.pk}")
    screenshot(page, "item-history")
    page.locator(f"#change-{insert.pk} .change-summary").click()
    expect(page.locator(".item-change.selected")).to_have_id(f"change-{insert.pk}")

    page.goto("/history/")
    expect(page.locator(".history-row")).to_have_count(3)
    expect(page.locator(".history-row").first).to_contain_text('status: "PENDING" → "SHIPPED"')
    screenshot(page, "history")


def test_it_marks_a_partial_record_and_its_unknown_state(logged_in_page, make_table, dynamodb):
    page = logged_in_page
    table = make_table(view_type="NEW_IMAGE", range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "A"}, "v": {"N": "1"}})
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "A"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"N": "2"}},
    )
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "A"}})
    ingest(source)
    modify = ChangeRecord.objects.get(source=source, event_name="MODIFY")

    open_record(page, modify.pk)

    expect(page.locator("#diff-partial")).to_contain_text("view type is NEW_IMAGE")
    expect(page.locator("[data-image='old']")).to_have_text(
        "Not in this record: the stream's view type NEW_IMAGE carries no old image."
    )
    expect(tree_node(page, "new", "v")).to_have_class("node")
    expect(page.locator("#changes")).to_contain_text("Changes unknown")
    page.locator("#link-item-history").click()
    page.wait_for_selector("#item[data-ready='true']")
    expect(page.locator("#state-body")).to_have_text("Removed: the item did not exist after this change.")
    screenshot(page, "partial-item")


@pytest.fixture
def hostile(live_server_url, make_table, dynamodb):
    """An item whose key, attribute names and values are markup."""
    table = make_table(range_key=False, prefix="hostile")
    source = source_add(table_name=table, region="us-east-1")
    key = {"pk": {"S": IMG + SCRIPT}}
    dynamodb.put_item(
        TableName=table,
        Item={
            **key,
            IMG: {"S": SCRIPT},
            SCRIPT: {"M": {IMG: {"SS": [IMG, SCRIPT]}, "n": {"N": "1"}}},
            "list": {"L": [{"S": IMG}]},
        },
    )
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #img = :img, #script.#inner = :set, #new = :new",
        ExpressionAttributeNames={"#img": IMG, "#script": SCRIPT, "#inner": IMG, "#new": SCRIPT + IMG},
        ExpressionAttributeValues={
            ":img": {"S": IMG},
            ":set": {"SS": [SCRIPT, IMG + "!"]},
            ":new": {"M": {IMG: {"S": SCRIPT}}},
        },
    )
    assert ingest(source) == 2
    return ChangeRecord.objects.get(source=source, event_name="MODIFY")


def node(page, selector, path):
    """Class, text and marked set members of the element under `selector` whose data-path is
    `path`, found in JS: these paths hold quotes and backslashes that a CSS selector would need
    escaped."""
    return page.evaluate(
        """([selector, path]) => {
            const found = [...document.querySelectorAll(selector)].find((node) => node.dataset.path === path);
            if (!found) return null;
            const texts = (query) => [...found.querySelectorAll(query)].map((member) => member.textContent);
            const info = { className: found.className, text: found.textContent };
            if (found.querySelector(".node-set")) {
                info.added = texts(".member.member-added");
                info.removed = texts(".member.member-removed");
            }
            return info;
        }""",
        [selector, path],
    )


def assert_nothing_injected(page):
    assert not xss_fired(page)
    assert page.locator("img").count() == 0
    # Only the page's own scripts: json_script data and the static files.
    assert page.evaluate("[...document.scripts].filter(s => !s.src && s.type !== 'application/json').length") == 0


def test_it_shows_markup_from_dynamodb_as_text(logged_in_page, hostile, csp_bypassed):
    page = logged_in_page
    install_xss_tripwire(page)

    open_record(page, hostile.pk)

    expect(page.locator(".record-key")).to_have_text(f"pk={IMG}{SCRIPT}")
    expect(page.locator("#changes li.change")).to_have_count(3)
    img, script = json.dumps(IMG), json.dumps(SCRIPT)
    assert node(page, "#changes li.change", f"[{img}]") == {
        "className": "change ch-changed",
        "text": f'changed [{img}] S {script} → {img}',
    }
    assert node(page, "#changes li.change", f"[{json.dumps(SCRIPT + IMG)}]") == {
        "className": "change ch-added",
        "text": f"added [{json.dumps(SCRIPT + IMG)}] M " + json.dumps({IMG: SCRIPT}, separators=(",", ":")),
    }
    nested = node(page, "[data-image='new'] li.node", f"[{script}][{img}]")
    assert nested["className"] == "node hl-changed"
    assert nested["added"] == [json.dumps(IMG + "!")]
    assert node(page, "[data-image='old'] li.node", f"[{script}][{img}]")["removed"] == [img]
    assert node(page, "[data-image='new'] li.node", "list[0]")["text"] == f"[0] S {img}"
    assert_nothing_injected(page)
    screenshot(page, "xss-record")

    page.get_by_role("button", name="Raw DynamoDB JSON").click()
    expect(page.locator("#raw-json")).to_contain_text("<script>__xss()</script>")
    assert_nothing_injected(page)

    page.locator("#link-item-history").click()
    page.wait_for_selector("#item[data-ready='true']")
    expect(page.locator("h1 .record-key")).to_have_text(f"pk={IMG}{SCRIPT}")
    expect(page.locator("#state-body")).to_contain_text(IMG)
    page.locator(".item-change .show-state").first.click()
    expect(page.locator("#state-body")).to_contain_text(SCRIPT)
    assert_nothing_injected(page)
    screenshot(page, "xss-item")

    page.goto("/history/")
    expect(page.locator(".history-row")).to_have_count(2)
    expect(page.locator(".history-key-cell").first).to_have_text(f"pk={IMG}{SCRIPT}")
    assert_nothing_injected(page)
    screenshot(page, "xss-history")


MASKED = "\u2022\u2022\u2022"


def test_it_shows_markup_from_dynamodb_as_text_or_masked_under_masking_rules(logged_in_page, hostile, csp_bypassed):
    # One rule of each mode on attributes that are markup (the key among them), one on a plain
    # number inside markup, and one that reaches nothing; the list's payload stays unmasked.
    img, script = json.dumps(IMG), json.dumps(SCRIPT)
    rules = {
        "pk": "hash",
        f"[{img}]": "redact",
        f"[{script}][{img}]": "hash",
        f"[{json.dumps(SCRIPT + IMG)}]": "remove",
        f"[{script}].n": "redact",
        "**.ssn": "remove",
    }
    for path, mode in rules.items():
        hostile.source.masking_rules.create(path=path, mode=mode)
    masking = masking_load()

    def hashed(value):
        [(tag, stand_in)] = masking.value_hash(value).items()
        return stand_in

    key_shown = "pk=" + hashed({"S": IMG + SCRIPT})
    page = logged_in_page
    install_xss_tripwire(page)

    open_record(page, hostile.pk)

    expect(page.locator(".record-key")).to_have_text(key_shown)
    expect(page.locator("#unmask-on")).to_be_visible()  # the owner is an Admin: masked until asked
    expect(page.locator("#changes li.change")).to_have_count(2)
    assert node(page, "#changes li.change", f"[{img}]") == {
        "className": "change ch-changed",
        "text": f"changed [{img}] S {MASKED} → {MASKED}",
    }
    added, removed = hashed({"S": IMG + "!"}), hashed({"S": IMG})
    assert node(page, "#changes li.change", f"[{script}][{img}]") == {
        "className": "change ch-changed",
        "text": f"changed [{script}][{img}] SS +{{{added}}} -{{{removed}}}",
    }
    assert node(page, "#changes li.change", f"[{json.dumps(SCRIPT + IMG)}]") is None
    assert node(page, "[data-image='new'] li.node", f"[{json.dumps(SCRIPT + IMG)}]") is None
    whole_set = hashed({"SS": [SCRIPT, IMG + "!"]})
    assert node(page, "[data-image='new'] li.node", f"[{script}][{img}]") == {
        "className": "node hl-changed",
        "text": f"{IMG} SS {whole_set}",
    }
    assert node(page, "[data-image='new'] li.node", f"[{script}].n")["text"] == f"n N {MASKED}"
    assert node(page, "[data-image='old'] li.node", f"[{img}]")["text"] == f"{IMG} S {MASKED}"
    assert node(page, "[data-image='new'] li.node", "list[0]")["text"] == f"[0] S {img}"
    # What the script drew as masked is all stand-ins, each set apart by its class.
    shown = set(page.locator("#record .masked").all_text_contents())
    assert {MASKED, added, removed, whole_set, hashed({"S": IMG + SCRIPT})} <= shown
    assert all(stand_in == MASKED or re.fullmatch(r"hmac:[0-9a-f]{16}", stand_in) for stand_in in shown), shown
    assert_nothing_injected(page)
    screenshot(page, "xss-record-masked")

    page.get_by_role("button", name="Raw DynamoDB JSON").click()
    raw = json.loads(page.locator("#raw-json").inner_text())
    assert raw["dynamodb"]["Keys"] == {"pk": {"S": hashed({"S": IMG + SCRIPT})}}
    assert raw["dynamodb"]["NewImage"][IMG] == {"S": MASKED}
    assert SCRIPT + IMG not in raw["dynamodb"]["NewImage"]
    assert raw["dynamodb"]["NewImage"]["list"] == {"L": [{"S": IMG}]}
    assert_nothing_injected(page)

    # The key is masked, so the item's history is reached through the record, not the key.
    page.locator("#link-item-history").click()
    page.wait_for_selector("#item[data-ready='true']")
    expect(page.locator("h1 .record-key")).to_have_text(key_shown)
    expect(page.locator("#state-body")).to_contain_text(IMG)
    assert node(page, "#state-body li.node", f"[{img}]")["text"] == f"{IMG} S {MASKED}"
    page.locator(".item-change .show-state").first.click()
    expect(page.locator("#state-body")).to_contain_text(SCRIPT)  # a name: rules mask values, not names
    assert_nothing_injected(page)
    screenshot(page, "xss-item-masked")

    page.goto("/history/")
    expect(page.locator(".history-row")).to_have_count(2)
    expect(page.locator(".history-key-cell").first).to_have_text(key_shown)
    assert_nothing_injected(page)


UNMASK_ACTION = "streams.changerecord.unmask"


@pytest.fixture
def masked_order(order):
    """The order's records, its source masking the city (hash), the tags (redact) and qty (remove);
    returns (records, hashed) where hashed(typed value) is the stand-in the hash mode shows."""
    source = order[0].source
    for path, mode in (("address.city", "hash"), ("tags", "redact"), ("qty", "remove")):
        source.masking_rules.create(path=path, mode=mode)
    masking = masking_load()

    def hashed(value):
        [(tag, stand_in)] = masking.value_hash(value).items()
        return stand_in

    return order, hashed


def test_it_shows_an_admin_masked_values_until_asked_and_audits_each_unmasked_view(persona_page, masked_order, live_server_url):
    (insert, modify, shipped), hashed = masked_order
    page = persona_page("admin")
    city = change_line(page, "address.city").locator(".change-detail")
    masked_city = f'S {hashed({"S": "Paris"})} → {hashed({"S": "Lyon"})}'

    open_record(page, modify.pk)

    expect(city).to_have_text(masked_city)
    expect(city.locator(".masked")).to_have_count(2)
    expect(change_line(page, "tags").locator(".change-detail")).to_have_text(f"SS +{{{MASKED}}} -{{{MASKED}}}")
    expect(change_line(page, "qty")).to_have_count(0)
    expect(tree_node(page, "new", "qty")).to_have_count(0)
    expect(tree_node(page, "new", "tags").locator(".masked")).to_have_text(MASKED)
    expect(page.locator("#unmask-banner")).to_have_count(0)
    assert not AuditEntry.objects.filter(action=UNMASK_ACTION).exists()
    screenshot(page, "admin-masked")

    with page.expect_navigation():
        page.locator("#unmask-on").click()
    page.wait_for_selector("#record[data-ready='true']")

    expect(page).to_have_url(f"{live_server_url}/records/{modify.pk}/?unmasked=1")
    expect(page.locator("#unmask-banner")).to_be_visible()
    expect(page.locator("#unmask-on")).to_have_count(0)
    expect(city).to_have_text('S "Paris" → "Lyon"')
    expect(change_line(page, "qty").locator(".change-detail")).to_have_text('N 1 → S "1"')
    expect(change_line(page, "tags").locator(".member-added")).to_have_text('+{"priority"}')
    expect(page.locator("#record .masked")).to_have_count(0)
    # The page's links keep showing it unmasked (each of those views is audited in turn).
    expect(page.locator("#link-item-history")).to_have_attribute("href", re.compile(r"[?&]unmasked=1"))
    [entry] = AuditEntry.objects.filter(action=UNMASK_ACTION)
    assert entry.actor == "admin"
    assert entry.details == {"surface": "record", "path": f"/records/{modify.pk}/", "query": [["unmasked", "1"]]}
    screenshot(page, "admin-unmasked")

    with page.expect_navigation():
        page.locator("#unmask-off").click()
    page.wait_for_selector("#record[data-ready='true']")

    expect(page).to_have_url(f"{live_server_url}/records/{modify.pk}/")
    expect(city).to_have_text(masked_city)
    expect(page.locator("#unmask-banner")).to_have_count(0)
    expect(page.locator("#unmask-on")).to_be_visible()
    assert AuditEntry.objects.filter(action=UNMASK_ACTION).count() == 1


def test_it_gives_a_viewer_masked_values_to_see_and_to_copy_and_no_way_to_unmask(persona_page, masked_order):
    (insert, modify, shipped), hashed = masked_order
    page = persona_page("viewer")

    open_record(page, modify.pk)

    expect(change_line(page, "address.city").locator(".change-detail")).to_have_text(
        f'S {hashed({"S": "Paris"})} → {hashed({"S": "Lyon"})}'
    )
    expect(page.locator("#unmask-on")).to_have_count(0)
    # Told that masking applies, with no way round it.
    expect(page.locator("#unmask-offer")).to_contain_text("Masking rules apply")
    expect(page.locator("#download-lambda")).not_to_have_attribute("href", re.compile("unmasked"))

    page.get_by_role("button", name="Copy as JSON").click()
    expect(page.locator("#copy-status")).to_have_text("Copied the record as JSON.")
    copied = page.evaluate("navigator.clipboard.readText()")
    page.get_by_role("button", name="Copy as Lambda test event").click()
    expect(page.locator("#copy-status")).to_have_text("Copied the Lambda test event.")
    event = page.evaluate("navigator.clipboard.readText()")

    for record in (json.loads(copied), json.loads(event)["Records"][0]):
        assert record["eventID"] == modify.event_id
        new, old = record["dynamodb"]["NewImage"], record["dynamodb"]["OldImage"]
        assert new["address"]["M"]["city"] == {"S": hashed({"S": "Lyon"})}
        assert old["address"]["M"]["city"] == {"S": hashed({"S": "Paris"})}
        assert new["tags"] == old["tags"] == {"SS": MASKED}
        assert "qty" not in new and "qty" not in old
        assert new["status"] == {"S": "PENDING"}  # what no rule names is copied as it is
    for text in (copied, event):
        assert "Lyon" not in text and "Paris" not in text and "priority" not in text
    assert not AuditEntry.objects.filter(action=UNMASK_ACTION).exists()

    refused = page.goto(f"/records/{modify.pk}/?unmasked=1")
    assert refused.status == 403
    assert not AuditEntry.objects.filter(action=UNMASK_ACTION).exists()

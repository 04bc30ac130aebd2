"""The trigger pages in Chromium: a trigger configured through the admin, items written to
DynamoDB Local, and the invocations appearing live in the timeline as the trigger runner (in this
process, in a thread) records them and pushes each one over the Redis channel layer."""

import pytest
from playwright.sync_api import expect

from streams.models import ChangeRecord
from streams.sources import source_add
from tests.handlers import triggers as trigger_handlers
from tests.browser.conftest import PASSWORD, in_thread, ingest, log_in, screenshot, wait_for_socket
from tests.support.triggering import run_until_idle
from workers.models import Invocation, Trigger

ROWS = "#timeline-rows tr.timeline-row"


@pytest.fixture
def operator(django_user_model):
    """Adding a trigger in the admin takes the workers app's permissions: a superuser has them."""
    return django_user_model.objects.create_superuser(username="operator", password=PASSWORD)


@pytest.fixture
def orders(live_server_url, make_table, dynamodb):
    table = make_table(range_key=False, prefix="orders")
    source = source_add(table_name=table, region="us-east-1")

    def put(pk, **attributes):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": pk}, **{k: {"S": v} for k, v in attributes.items()}})

    source.put = put
    return source


def test_it_shows_invocations_live_in_the_timeline(page, live_server_url, operator, orders):
    page.goto("/admin/login/?next=/admin/workers/trigger/add/")
    log_in(page, username=operator.username, password=PASSWORD)

    # Configure the trigger through the admin's add form.
    page.fill("#id_name", "ship-emails")
    page.select_option("#id_source", str(orders.pk))
    page.select_option("#id_target", "python")
    page.fill("#id_handler", "tests.handlers.triggers.record_batches")
    page.fill("#id_batch_size", "2")
    screenshot(page, "admin-add")
    with page.expect_navigation():
        page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("ship-emails")
    trigger = Trigger.objects.get(name="ship-emails")
    assert trigger.source_id == orders.pk and trigger.batch_size == 2

    page.goto("/triggers/timeline/")
    wait_for_socket(page)
    expect(page.locator("#timeline-state")).to_have_text("live")
    expect(page.locator(ROWS)).to_have_count(0)
    screenshot(page, "timeline-empty")

    for number in range(3):
        orders.put(f"k{number}", status="NEW")
    assert ingest(orders) == 3
    in_thread(lambda: run_until_idle(trigger))

    # Two batches (2 + 1 records), newest first, without a reload.
    expect(page.locator(ROWS)).to_have_count(2)
    invocations = list(Invocation.objects.filter(trigger=trigger).order_by("-started_at", "-id"))
    assert [i.record_count for i in invocations] == [1, 2]
    assert trigger_handlers.calls() == [["k0", "k1"], ["k2"]]
    ids = page.locator(ROWS).evaluate_all("rows => rows.map(row => Number(row.dataset.id))")
    assert ids == [i.pk for i in invocations]
    first_row = page.locator(ROWS).first
    expect(first_row.locator(".outcome")).to_have_class("outcome outcome-success")
    expect(first_row).to_contain_text("ship-emails")
    expect(first_row).to_contain_text("1 / 0")
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1
    screenshot(page, "timeline-live")

    # A filtered timeline is server-rendered for its filter, then live for it too.
    page.goto(f"/triggers/timeline/?outcome=function_error&trigger={trigger.pk}")
    wait_for_socket(page)
    expect(page.locator(ROWS)).to_have_count(0)
    expect(page.locator("#timeline-empty")).to_be_visible()

    # The invocation detail: the exact payload and the records it sent.
    page.goto(f"/invocations/{invocations[-1].pk}/")
    expect(page.locator("#invocation-payload")).to_contain_text('"eventSource": "aws:dynamodb"')
    expect(page.locator("tr.invocation-record")).to_have_count(2)
    expect(page.locator("#invocation")).to_have_attribute("data-diffs-drawn", "true")
    for row in page.locator("tr.invocation-record").all():
        expect(row.locator("li.change[data-path='status']")).to_contain_text('"NEW"')
    screenshot(page, "invocation")

    # The record page lists the invocation that sent it.
    record = ChangeRecord.objects.filter(source=orders).order_by("sequence_key").first()
    page.click(f"tr.invocation-record[data-id='{record.pk}'] a")
    expect(page.locator("#record-invocations tr.record-invocation")).to_have_count(1)
    expect(page.locator("#record-invocations")).to_contain_text("ship-emails")
    screenshot(page, "record-invocations")

    # The trigger list and the dead letters (none).
    page.click("header nav >> text=Triggers")
    row = page.locator(f"tr.trig-row[data-id='{trigger.pk}']")
    expect(row.locator(".trig-lag")).to_have_text("0")
    expect(row.locator(".trig-errors")).to_have_text("0%")
    expect(row.locator(".trig-last-hour")).to_have_text("2")
    screenshot(page, "triggers")
    page.goto("/triggers/dead-letters/")
    expect(page.locator("#dead-letters")).to_contain_text("No dead letters.")
    screenshot(page, "dead-letters")


def test_it_shows_failures_and_dead_letters(page, live_server_url, operator, orders):
    page.goto("/admin/login/?next=/triggers/timeline/")
    log_in(page, username=operator.username, password=PASSWORD)
    trigger = Trigger.objects.create(
        name="always-fails", source=orders, target=Trigger.Target.PYTHON,
        handler="tests.handlers.triggers.fail_always", maximum_retry_attempts=1,
    )
    wait_for_socket(page)

    orders.put("a", note="<img src=x onerror=alert(1)>")
    ingest(orders)
    in_thread(lambda: run_until_idle(trigger))

    expect(page.locator(ROWS)).to_have_count(2)
    expect(page.locator(f"{ROWS} .outcome-function_error")).to_have_count(2)
    expect(page.locator(ROWS).first.locator(".timeline-error")).to_have_text("ValueError")
    # The trigger was added after the page loaded: the pushed row still names it.
    expect(page.locator(ROWS).first).to_contain_text("always-fails")
    screenshot(page, "timeline-failures")

    page.goto("/triggers/dead-letters/")
    expect(page.locator("tr.dead-letter-row")).to_have_count(1)
    expect(page.locator("tr.dead-letter-row")).to_contain_text("Retries exhausted")
    screenshot(page, "dead-letters")
    page.click("tr.dead-letter-row a")
    expect(page.locator("#invocation-error-type")).to_have_text("ValueError")
    expect(page.locator("#invocation-payload")).to_contain_text("<img src=x onerror=alert(1)>")
    # The record's diff is drawn as text, never as markup.
    expect(page.locator("td.invocation-diff li.change[data-path='note']")).to_contain_text("<img src=x onerror=alert(1)>")
    expect(page.locator("td.invocation-diff img")).to_have_count(0)
    screenshot(page, "invocation-failed")


def test_it_builds_timeline_rows_as_the_server_renders_them(page, live_server_url, operator, orders):
    page.goto("/admin/login/?next=/triggers/timeline/")
    log_in(page, username=operator.username, password=PASSWORD)
    trigger = Trigger.objects.create(
        name="ship-emails", source=orders, target=Trigger.Target.PYTHON,
        handler="tests.handlers.triggers.record_batches", batch_size=1,
    )
    wait_for_socket(page)

    orders.put("a", status="NEW")
    orders.put("b", status="NEW")
    ingest(orders)
    in_thread(lambda: run_until_idle(trigger))
    expect(page.locator(ROWS)).to_have_count(2)
    # Rows that arrive live are marked new (highlighted); otherwise they are the server's rows.
    built = page.locator(ROWS).evaluate_all(
        "rows => rows.map(row => { const copy = row.cloneNode(true); copy.classList.remove('timeline-new'); return copy.outerHTML; })"
    )

    page.reload()
    wait_for_socket(page)
    assert page.locator(ROWS).evaluate_all("rows => rows.map(row => row.outerHTML)") == built

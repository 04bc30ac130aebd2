"""The demo's traffic generator and admin command, against real DynamoDB Local and PostgreSQL."""

import io
import random
import re
import threading
import time
import uuid
from collections import Counter

import boto3
import botocore.config
import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

from demo.provision import DEMO_MASKING_RULES, table_ensure
from demo.examples import notify_shipped
from demo.traffic import DemoState, demo_run, demo_step, state_load
from streams.models import MaskingRule, StreamSource
from streams.records import masking_load
from tests.support import dynamodb_local
from workers.handler_host import LambdaContext

ALL_TYPES = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}
# Now, so that expiry times are in the future for demo_run, which reads the real clock.
START = float(int(time.time()))


def run_steps(*, client, table, seed, steps, tick_s=5.0):
    """Drive the writer with a clock that moves tick_s per write, so expiries come due in a
    test that takes seconds rather than minutes."""
    state = DemoState()
    rng = random.Random(seed)
    actions = Counter()
    for step in range(steps):
        actions[demo_step(client=client, table=table, rng=rng, state=state, now=START + step * tick_s)] += 1
    return state, actions


def stream_records(*, client, table):
    streams = boto3.client("dynamodbstreams")
    arn = client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records.extend(page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


def types_in(image):
    found = set()
    for value in image.values():
        for kind, inner in value.items():
            found.add(kind)
            if kind == "M":
                found |= types_in(inner)
            elif kind == "L":
                found |= types_in({str(i): v for i, v in enumerate(inner)})
    return found


def scan_all(*, client, table):
    items, kwargs = [], {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_it_creates_the_demo_table_once(dynamodb):
    table = f"demo-{uuid.uuid4().hex[:10]}"

    assert table_ensure(client=dynamodb, table=table) is True
    assert table_ensure(client=dynamodb, table=table) is False

    described = dynamodb.describe_table(TableName=table)["Table"]
    assert described["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_it_writes_inserts_modifies_and_removes_with_every_attribute_type(dynamodb, make_table):
    table = make_table(range_key=False, prefix="demo")

    state, actions = run_steps(client=dynamodb, table=table, seed=7, steps=250)
    records = stream_records(client=dynamodb, table=table)

    assert {"insert", "abandon", "pay", "ship", "deliver", "cancel", "expire"} <= set(actions)
    assert "stale" not in actions
    # One write per step, and every write is one stream record.
    assert len(records) == 250
    events = Counter(record["eventName"] for record in records)
    assert events["INSERT"] == actions["insert"] + actions["abandon"]
    assert events["MODIFY"] == actions["pay"] + actions["ship"] + actions["ship_untracked"] + actions["deliver"]
    assert events["REMOVE"] == actions["cancel"] + actions["expire"]

    inserted = set()
    for record in records:
        for image in ("NewImage", "OldImage"):
            inserted |= types_in(record["dynamodb"].get(image, {}))
    assert inserted == ALL_TYPES
    assert types_in(next(r for r in records if r["eventName"] == "INSERT")["dynamodb"]["NewImage"]) == ALL_TYPES

    modifies = [record["dynamodb"] for record in records if record["eventName"] == "MODIFY"]
    # PENDING -> PAID drops the coupon and adds to the tag set.
    assert any("coupon" in m["OldImage"] and "coupon" not in m["NewImage"] for m in modifies)
    assert any(set(m["NewImage"]["tags"]["SS"]) - set(m["OldImage"]["tags"]["SS"]) == {"paid"} for m in modifies)
    # PAID -> SHIPPED adds tracking and removes "new" from the tag set.
    assert any("tracking" not in m["OldImage"] and "tracking" in m["NewImage"] for m in modifies)
    assert any("new" in m["OldImage"]["tags"]["SS"] and "new" not in m["NewImage"]["tags"]["SS"] for m in modifies)
    # Sometimes an attribute changes type, and NULL becomes a string.
    assert any("N" in m["OldImage"]["priority"] and "S" in m["NewImage"]["priority"] for m in modifies)
    assert any("NULL" in m["OldImage"]["gift_message"] and "S" in m["NewImage"]["gift_message"] for m in modifies)

    removes = [record["dynamodb"]["OldImage"] for record in records if record["eventName"] == "REMOVE"]
    cancelled = [old for old in removes if "expires_at" not in old]
    expired = [old for old in removes if "expires_at" in old]
    assert cancelled and all(old["status"]["S"] in ("PENDING", "PAID") for old in cancelled)
    assert {old["status"]["S"] for old in expired} == {"PENDING", "DELIVERED"}  # abandoned carts and old orders
    assert all(int(old["expires_at"]["N"]) <= START + 5.0 * 249 for old in expired)

    # The table holds exactly what the writer believes is in flight or waiting to expire.
    items = {item["pk"]["S"]: item for item in scan_all(client=dynamodb, table=table)}
    assert set(items) == set(state.orders) | {pk for _, pk in state.expiring}
    for pk, status in state.orders.items():
        assert items[pk]["status"]["S"] == status
        assert "tracking" not in items[pk] or status == "SHIPPED"  # some ship without it (below)
    assert all(items[pk]["status"]["S"] in ("PENDING", "DELIVERED") for _, pk in state.expiring)


def test_it_ships_an_order_without_tracking_now_and_then_which_the_example_handler_fails_on(dynamodb, make_table):
    table = make_table(range_key=False, prefix="demo")

    # 1,500 s of the writer's clock: the first a minute in, the next 15 minutes later.
    state, actions = run_steps(client=dynamodb, table=table, seed=7, steps=300)
    records = stream_records(client=dynamodb, table=table)

    untracked = [r for r in records if r["eventName"] == "MODIFY" and r["dynamodb"]["NewImage"]["status"]["S"] == "SHIPPED"
                 and "tracking" not in r["dynamodb"]["NewImage"]]
    assert actions["ship_untracked"] == len(untracked) == 2
    assert actions["ship"] > 10
    context = LambdaContext(name="demo-notify-shipped", region="us-east-1", request_id="r", timeout_s=3, memory_mb=128)
    answer = notify_shipped({"Records": untracked}, context)
    assert answer == {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in untracked]}


def test_it_writes_the_same_traffic_for_the_same_seed(dynamodb, make_table):
    first, second, other = (make_table(range_key=False, prefix="demo") for _ in range(3))

    run_steps(client=dynamodb, table=first, seed=42, steps=60)
    run_steps(client=dynamodb, table=second, seed=42, steps=60)
    run_steps(client=dynamodb, table=other, seed=43, steps=60)

    def contents(table):
        return sorted(scan_all(client=dynamodb, table=table), key=lambda item: item["pk"]["S"])

    assert contents(first) == contents(second)
    assert contents(first) != contents(other)


def test_it_picks_up_orders_in_flight_after_a_restart(dynamodb, make_table):
    table = make_table(range_key=False, prefix="demo")
    before, _ = run_steps(client=dynamodb, table=table, seed=5, steps=80)

    resumed = state_load(client=dynamodb, table=table)

    assert resumed.orders == before.orders
    assert sorted(resumed.expiring) == sorted(before.expiring)
    # A write against stale knowledge fails its condition instead of rewinding an order.
    pk = next(pk for pk, status in before.orders.items() if status == "PENDING")
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": pk}})
    stale = DemoState(orders={pk: "PENDING"})
    rng = random.Random(0)
    for _ in range(50):
        demo_step(client=dynamodb, table=table, rng=rng, state=stale, now=START)
        if stale.counts["stale"]:
            break
    assert stale.counts["stale"] == 1
    assert pk not in stale.orders
    assert pk not in {item["pk"]["S"] for item in scan_all(client=dynamodb, table=table)}


def test_it_keeps_going_when_dynamodb_is_unreachable(dynamodb, make_table):
    table = make_table(range_key=False, prefix="demo")
    state, _ = run_steps(client=dynamodb, table=table, seed=3, steps=40)
    in_flight, expiring = dict(state.orders), sorted(state.expiring)
    nowhere = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{dynamodb_local.free_port()}",
        config=botocore.config.Config(connect_timeout=1, retries={"max_attempts": 1}),
    )

    counts = demo_run(
        client=nowhere, table=table, rng=random.Random(1), state=state, rate=1000, count=3,
        stop=threading.Event(), max_backoff_s=0.01,
    )

    assert counts["error"] == 3
    # A failed write forgets nothing: the orders are still there to advance or expire.
    assert state.orders == in_flight
    assert sorted(state.expiring) == expiring
    # The same state carries on once DynamoDB answers again.
    before = sum(counts.values())
    counts = demo_run(
        client=dynamodb, table=table, rng=random.Random(1), state=state, rate=1000, count=5,
        stop=threading.Event(), max_backoff_s=0.01,
    )
    assert counts["error"] == 3
    assert sum(counts.values()) - before == 5
    assert counts["stale"] == 0


def test_it_stops_at_once_when_told_to(dynamodb, make_table):
    table = make_table(range_key=False, prefix="demo")
    stop = threading.Event()
    stop.set()

    counts = demo_run(
        client=dynamodb, table=table, rng=random.Random(1), state=DemoState(), rate=1, count=None, stop=stop
    )

    assert counts == Counter()


@pytest.mark.django_db
def test_it_creates_and_registers_the_demo_table(dynamodb):
    table = f"demo-{uuid.uuid4().hex[:10]}"

    out = io.StringIO()
    for _ in range(2):
        call_command(
            "demo_writer", "--create", "--table", table, "--count", "10", "--rate", "1000", "--seed", "9", stdout=out,
        )

    # The writer says what makes the demo's alert fire by itself.
    assert ("In 60 s, then every 15 minutes, an order ships without tracking: the example trigger "
            "demo-notify-shipped fails on it") in out.getvalue()

    source = StreamSource.objects.get(table_name=table)
    assert source.endpoint_url == ""  # reached through AWS_ENDPOINT_URL_DYNAMODB like any deployment
    assert source.view_type == StreamSource.ViewType.NEW_AND_OLD_IMAGES
    assert source.key_schema == ["pk"]
    assert len(scan_all(client=dynamodb, table=table)) > 0
    from workers.models import Trigger

    [trigger] = Trigger.objects.filter(source=source)  # one example trigger, however often run
    assert trigger.handler == "demo.examples.notify_shipped" and trigger.report_batch_item_failures
    # Its masking rules, once however often run: one of each mode.
    assert sorted(source.masking_rules.values_list("path", "mode")) == sorted(DEMO_MASKING_RULES)
    assert {mode for _, mode in DEMO_MASKING_RULES} == set(MaskingRule.Mode)
    assert out.getvalue().count("Added masking rules") == 1


@pytest.mark.django_db
def test_it_masks_what_the_demo_writes_about_customers_and_cards(dynamodb):
    table = f"demo-{uuid.uuid4().hex[:10]}"
    call_command("demo_writer", "--create", "--table", table, "--count", "0", stdout=io.StringIO())
    source = StreamSource.objects.get(table_name=table)
    run_steps(client=dynamodb, table=table, seed=5, steps=80)
    masking = masking_load()

    items = [masking.image_mask(item, source_id=source.pk) for item in scan_all(client=dynamodb, table=table)]

    paid = [item for item in items if "payment" in item]
    assert items and paid
    for item in items:
        customer = item["customer"]["M"]
        assert customer["email"] == {"S": "\u2022\u2022\u2022"}
        assert re.fullmatch(r"hmac:[0-9a-f]{16}", customer["name"]["S"])
        assert set(customer["address"]["M"]) == {"city", "country"}
        assert item["status"]["S"] in ("PENDING", "PAID", "SHIPPED", "DELIVERED")  # no rule: as written
    for item in paid:
        assert re.fullmatch(r"hmac:[0-9a-f]{16}", item["payment"]["M"]["last4"]["S"])
        assert item["payment"]["M"]["method"]["S"] in ("card", "paypal", "invoice")

    # A rule someone deleted stays deleted when the demo starts again.
    source.masking_rules.filter(path="customer.address.zip").delete()
    call_command("demo_writer", "--create", "--table", table, "--count", "0", stdout=io.StringIO())
    assert source.masking_rules.count() == len(DEMO_MASKING_RULES) - 1


PASSWORD_LINE = re.compile(r"^Admin user: admin  password: (\S+)$", re.MULTILINE)


def demo_admin(url="http://127.0.0.1:8123/"):
    out = io.StringIO()
    call_command("demo_admin", "--url", url, stdout=out)
    return out.getvalue()


@pytest.fixture
def demo_settings(settings):
    settings.DEBUG = True
    return settings


@pytest.mark.django_db
def test_it_refuses_to_reset_the_admin_outside_the_demo(settings):
    settings.DEBUG = False
    get_user_model().objects.create_user(username="admin", password="kept-as-it-is-123")
    with pytest.raises(CommandError, match="only runs with DEBUG=1"):
        demo_admin()
    assert authenticate(username="admin", password="kept-as-it-is-123") is not None


@pytest.mark.django_db
@pytest.mark.usefixtures("demo_settings")
def test_it_gives_admin_a_new_password_each_run():
    first = demo_admin()
    second = demo_admin()

    first_password = PASSWORD_LINE.search(first).group(1)
    second_password = PASSWORD_LINE.search(second).group(1)
    assert first_password != second_password
    assert len(second_password) >= 20
    assert "http://127.0.0.1:8123/admin/login/" in second
    user = authenticate(username="admin", password=second_password)
    assert user is not None and list(user.groups.values_list("name", flat=True)) == ["Admin"]
    assert user.is_staff and not user.is_superuser
    assert authenticate(username="admin", password=first_password) is None
    assert get_user_model().objects.filter(username="admin").count() == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("demo_settings")
def test_it_restores_an_admin_someone_locked_out():
    locked = get_user_model().objects.create_user(username="admin", password="forgotten-long-ago")
    locked.is_active = False
    locked.save()

    password = PASSWORD_LINE.search(demo_admin()).group(1)

    locked.refresh_from_db()
    assert locked.is_active and locked.is_staff and list(locked.groups.values_list("name", flat=True)) == ["Admin"]
    assert authenticate(username="admin", password=password) == locked

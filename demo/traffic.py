"""Orders-like traffic for the demo table, so the dashboard has something to show.

Every attribute type DynamoDB has appears in the items (S, N, B, SS, NS, BS, M, L, NULL, BOOL),
and every kind of stream event: new orders (INSERT), status changes that add, remove and retype
attributes (MODIFY), cancelled orders (REMOVE) and TTL-style deletes of expired orders (REMOVE).

Now and then (UNTRACKED_FIRST_S after the writer starts, then every UNTRACKED_EVERY_S) an order
ships without tracking, the data problem the demo's example handler fails on
(demo/examples.py): its retries end in a dead letter, so the demo's alert rule fires by itself,
and resolves once its window passes without another.

The write logic is plain functions that take a boto3 client, so the tests drive them step by
step against DynamoDB Local; the demo_writer command is only the adapter around `demo_run`.
"""

import heapq
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streams import aws

log = logging.getLogger(__name__)

# Each transition is one UpdateItem, guarded by the status it expects, so a writer restarted
# against stale state fails one condition check instead of rewinding an order.
NEXT_STATUS = {"PENDING": "PAID", "PAID": "SHIPPED", "SHIPPED": "DELIVERED"}
CANCELLABLE = ("PENDING", "PAID")

# Keep the table from growing without end: past this many open orders the writer mostly
# advances existing ones; delivered and abandoned orders expire, cancelled ones are deleted.
MAX_OPEN_ORDERS = 40

# Seconds, of the writer's clock (demo_step's `now`). Longer apart than the demo alert rule's
# window (demo.provision.alert_ensure, 600 s), so that it resolves between two of them.
UNTRACKED_FIRST_S = 60
UNTRACKED_EVERY_S = 900

_CITIES = [
    ("Lisbon", "1100-148", "PT"),
    ("Osaka", "530-0001", "JP"),
    ("Nairobi", "00100", "KE"),
    ("Denver", "80202", "US"),
    ("Tallinn", "10111", "EE"),
    ("Recife", "50030-230", "BR"),
    ("Zürich", "8001", "CH"),
]
_FIRST = ["Ada", "Grace", "Linus", "Margaret", "Tim", "Radia", "Ken", "Barbara", "Dennis", "Frances"]
_LAST = ["Lovelace", "Hopper", "Torvalds", "Hamilton", "Berners-Lee", "Perlman", "Thompson", "Liskov"]
_SKUS = [("MUG-01", "12.50"), ("TEE-L", "19.99"), ("BOOK-42", "42"), ("KBD-87", "129.00"), ("CBL-C", "7.25"),
         ("LAMP-3", "64.90"), ("SOCK-6", "4.99")]
_CHANNELS = ["web", "mobile", "store", "partner"]
_CARRIERS = ["DHL", "UPS", "PostNL", "Yamato"]
_COUPONS = ["WELCOME10", "SPRING5", "FREESHIP"]


@dataclass
class DemoState:
    """What the writer knows about the table. It only steers which write comes next; DynamoDB
    stays the truth, and every write is conditional on it."""

    orders: dict[str, str] = field(default_factory=dict)  # pk -> status, orders still in flight
    expiring: list[tuple[int, str]] = field(default_factory=list)  # heap of (expires_at, pk)
    counts: Counter = field(default_factory=Counter)
    # When the next order ships without tracking; None until the first step sets it.
    untracked_at: float | None = None


def _s(value: str) -> dict:
    return {"S": value}


def _n(value) -> dict:
    return {"N": str(value)}


def order_new(*, rng, now: float, abandoned: bool = False) -> dict:
    """A new order item in DynamoDB typed JSON, using every attribute type."""
    order_id = f"{rng.getrandbits(40):010X}"
    city, zip_code, country = rng.choice(_CITIES)
    lines = []
    total = 0.0
    for sku, price in rng.sample(_SKUS, rng.randint(1, 3)):
        qty = rng.randint(1, 4)
        total += qty * float(price)
        lines.append({"M": {"sku": _s(sku), "qty": _n(qty), "price": _n(price), "gift": {"BOOL": rng.random() < 0.2}}})
    item = {
        "pk": _s(f"order#{order_id}"),
        "status": _s("PENDING"),
        "created_at": _s(datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")),
        "customer": {"M": {
            "name": _s(f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"),
            "email": _s(f"customer{rng.randint(1, 9999)}@example.com"),
            "vip": {"BOOL": rng.random() < 0.15},
            "address": {"M": {"city": _s(city), "zip": _s(zip_code), "country": _s(country)}},
        }},
        "items": {"L": lines},
        "total": _n(f"{total:.2f}"),
        "discount": _n(f"-{rng.randint(1, 9)}.{rng.randint(0, 99):02d}"),
        # DynamoDB keeps 38 significant digits; a dashboard that goes through float loses them.
        "ledger_ref": _n(rng.randint(10**37, 10**38 - 1)),
        "fx_rate": _n(f"0.{rng.randint(1, 999_999_999):09d}1"),
        "risk_score": _n(f"{rng.randint(1, 9)}.{rng.randint(0, 99):02d}E-{rng.randint(20, 120)}"),
        "priority": _n(rng.randint(1, 3)),
        "tags": {"SS": sorted({"new", rng.choice(_CHANNELS), rng.choice(["eu", "apac", "amer"])})},
        "lucky_numbers": {"NS": [str(n) for n in sorted(rng.sample(range(1, 100), 3))]},
        "receipt_digest": {"B": rng.randbytes(16)},
        "signatures": {"BS": [rng.randbytes(8), rng.randbytes(8)]},
        "gift_message": {"NULL": True},
        "express": {"BOOL": rng.random() < 0.3},
        "version": _n(1),
    }
    if rng.random() < 0.5:
        item["coupon"] = _s(rng.choice(_COUPONS))
    if abandoned:
        # An abandoned cart: kept for a short while, then deleted by the TTL-style sweep.
        item["expires_at"] = _n(int(now) + rng.randint(20, 90))
    return item


def _transition(*, rng, status: str, now: float, tracked: bool = True) -> tuple[str, dict, dict]:
    """UpdateExpression, names and values that move an order from `status` to the next one;
    tracked=False ships (PAID -> SHIPPED) without the tracking attribute."""
    stamp = _s(datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"))
    names = {"#s": "status", "#v": "version", "#u": "updated_at"}
    values = {":from": _s(status), ":to": _s(NEXT_STATUS[status]), ":t": stamp, ":one": _n(1)}
    sets = ["#s = :to", "#u = :t"]
    adds = ["#v :one"]
    removes, deletes = [], []
    if status == "PENDING":  # -> PAID: payment details arrive, any coupon is used up.
        names |= {"#pay": "payment", "#coupon": "coupon", "#tags": "tags"}
        values |= {
            ":pay": {"M": {"method": _s(rng.choice(["card", "paypal", "invoice"])),
                           "last4": _s(f"{rng.randint(0, 9999):04d}"), "captured": {"BOOL": True}}},
            ":paid": {"SS": ["paid"]},
        }
        sets.append("#pay = :pay")
        removes.append("#coupon")
        adds.append("#tags :paid")
    elif status == "PAID":  # -> SHIPPED: tracking appears, "new" leaves the tag set.
        names |= {"#trk": "tracking", "#tags": "tags", "#lucky": "lucky_numbers", "#gift": "gift_message"}
        values |= {
            ":trk": {"M": {"carrier": _s(rng.choice(_CARRIERS)), "number": _s(f"TRK{rng.getrandbits(48):012X}"),
                           "events": {"L": [{"M": {"at": stamp, "what": _s("picked up")}}]}}},
            ":new": {"SS": ["new"]},
            ":more": {"NS": [str(rng.randint(100, 999))]},
            ":msg": _s("Happy birthday!"),
        }
        sets += ["#trk = :trk", "#gift = :msg"]
        if not tracked:
            del names["#trk"], values[":trk"]
            sets.remove("#trk = :trk")
        deletes.append("#tags :new")
        adds.append("#lucky :more")
        if rng.random() < 0.4:
            # A type change: priority was a number, the shipping team writes a word.
            names["#prio"] = "priority"
            values[":prio"] = _s("express")
            sets.append("#prio = :prio")
    else:  # SHIPPED -> DELIVERED: proof of delivery, then the order expires after a while.
        names |= {"#pod": "proof_of_delivery", "#sig": "signatures", "#exp": "expires_at", "#tags": "tags"}
        values |= {
            ":pod": {"B": rng.randbytes(24)},
            ":sig": {"BS": [rng.randbytes(8)]},
            ":exp": _n(int(now) + rng.randint(30, 180)),
            ":done": {"SS": ["delivered"]},
        }
        sets += ["#pod = :pod", "#exp = :exp"]
        adds += ["#sig :sig", "#tags :done"]
    expression = "SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    if adds:
        expression += " ADD " + ", ".join(adds)
    if deletes:
        expression += " DELETE " + ", ".join(deletes)
    return expression, names, values


def _condition_failed(exc: Exception) -> bool:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def demo_step(*, client, table: str, rng, state: DemoState, now: float | None = None) -> str:
    """Make one write and return what it was: insert, abandon, pay, ship, ship_untracked (a
    ship without tracking, due every UNTRACKED_EVERY_S), deliver, cancel, expire, or stale (a
    conditional write that found the item changed; nothing was written).

    AWS errors other than a failed condition propagate: the caller decides how to back off.
    """
    now = time.time() if now is None else now
    if state.untracked_at is None:
        state.untracked_at = now + UNTRACKED_FIRST_S

    # DynamoDB Local does not run TTL, and real DynamoDB deletes expired items only within a
    # few days. So the writer deletes them itself, conditional on them really having expired.
    # (A real TTL delete also carries userIdentity {type: Service, principalId:
    # dynamodb.amazonaws.com}; these are ordinary deletes and the stream shows them as such.)
    # State changes only after a write went through (or found the item changed), so a write
    # that fails with a transient error is simply tried again on a later step.
    if state.expiring and state.expiring[0][0] <= now:
        pk = state.expiring[0][1]
        action = _write(
            state,
            "expire",
            lambda: client.delete_item(
                TableName=table,
                Key={"pk": _s(pk)},
                ConditionExpression="#exp <= :now",
                ExpressionAttributeNames={"#exp": "expires_at"},
                ExpressionAttributeValues={":now": _n(int(now))},
            ),
        )
        heapq.heappop(state.expiring)
        return action

    roll = rng.random()
    if not state.orders or (roll < 0.35 and len(state.orders) < MAX_OPEN_ORDERS):
        abandoned = rng.random() < 0.2
        item = order_new(rng=rng, now=now, abandoned=abandoned)
        pk = item["pk"]["S"]
        action = _write(
            state,
            "abandon" if abandoned else "insert",
            lambda: client.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)"),
        )
        if action == "abandon":
            heapq.heappush(state.expiring, (int(item["expires_at"]["N"]), pk))
        elif action == "insert":
            state.orders[pk] = "PENDING"
        return action

    pk = rng.choice(list(state.orders))
    status = state.orders[pk]
    if roll < 0.45 and status in CANCELLABLE:
        action = _write(
            state,
            "cancel",
            lambda: client.delete_item(
                TableName=table,
                Key={"pk": _s(pk)},
                ConditionExpression="#s IN (:p, :pd)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":p": _s("PENDING"), ":pd": _s("PAID")},
                ReturnValues="ALL_OLD",
            ),
        )
        del state.orders[pk]
        return action

    target = NEXT_STATUS[status]
    untracked = target == "SHIPPED" and now >= state.untracked_at
    expression, names, values = _transition(rng=rng, status=status, now=now, tracked=not untracked)
    action = _write(
        state,
        "ship_untracked" if untracked else {"PAID": "pay", "SHIPPED": "ship", "DELIVERED": "deliver"}[target],
        lambda: client.update_item(
            TableName=table,
            Key={"pk": _s(pk)},
            UpdateExpression=expression,
            ConditionExpression="#s = :from",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        ),
    )
    del state.orders[pk]
    if action == "stale":
        return action
    if untracked:
        state.untracked_at = now + UNTRACKED_EVERY_S
    if target == "DELIVERED":
        heapq.heappush(state.expiring, (int(values[":exp"]["N"]), pk))
    else:
        state.orders[pk] = target
    return action


def _write(state: DemoState, action: str, call) -> str:
    try:
        call()
    except aws.AWS_ERRORS as exc:
        if not _condition_failed(exc):
            raise
        # Someone else (or an earlier run) changed the item; forget it rather than retry.
        action = "stale"
    state.counts[action] += 1
    return action


def state_load(*, client, table: str, limit: int = 2000) -> DemoState:
    """Pick up the orders an earlier run left in flight, so a restarted demo keeps advancing
    them and still expires the ones whose time has come. Reads at most `limit` items."""
    state = DemoState()
    kwargs = {
        "TableName": table,
        "ProjectionExpression": "pk, #s, expires_at",
        "ExpressionAttributeNames": {"#s": "status"},
        "Limit": 500,
    }
    seen = 0
    while seen < limit:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            seen += 1
            pk = item["pk"]["S"]
            if "expires_at" in item:
                heapq.heappush(state.expiring, (int(float(item["expires_at"]["N"])), pk))
            elif item.get("status", {}).get("S") in NEXT_STATUS:
                state.orders[pk] = item["status"]["S"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return state


def demo_run(
    *,
    client,
    table: str,
    rng,
    state: DemoState,
    rate: float,
    count: int | None,
    stop: threading.Event,
    max_backoff_s: float = 30.0,
    report_every_s: float = 10.0,
) -> Counter:
    """Write at about `rate` writes a second until `stop` is set or `count` steps are done.

    A step that fails with an AWS error still counts towards `count`, so the loop always ends;
    it is logged and followed by a growing pause instead of ending the run, because DynamoDB
    restarting under a running demo is normal.
    """
    interval = 1.0 / rate
    steps = 0
    failures = 0
    next_at = time.monotonic()
    reported_at = time.monotonic()
    while not stop.is_set() and (count is None or steps < count):
        steps += 1
        try:
            action = demo_step(client=client, table=table, rng=rng, state=state)
        except aws.AWS_ERRORS as exc:
            failures += 1
            state.counts["error"] += 1
            pause = min(max_backoff_s, interval * 2 ** min(failures, 16))
            log.warning("Write failed (%s); retrying in %.1f s", aws.describe(exc), pause)
            stop.wait(pause)
            next_at = time.monotonic()
            continue
        failures = 0
        log.debug("%s", action)
        if time.monotonic() - reported_at >= report_every_s:
            reported_at = time.monotonic()
            log.info("Writes so far: %s; %d orders in flight", counts_summary(state.counts), len(state.orders))
        # Pace against a schedule, not by sleeping a fixed interval, so slow writes do not
        # lower the rate; after a long stall, do not burst to catch up.
        next_at = max(next_at + interval, time.monotonic() - interval)
        stop.wait(max(0.0, next_at - time.monotonic()))
    return state.counts


def counts_summary(counts: Counter) -> str:
    return ", ".join(f"{name} {counts[name]}" for name in sorted(counts)) or "none"

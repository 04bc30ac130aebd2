"""The Streams overview: every source's health, server-rendered and as JSON for live updates.

Shard lineage needs more than DynamoDB Local's one shard per table, so most tests write
Stream, Shard and ChangeRecord rows directly; one reads a real DynamoDB Local table.
"""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.html import parse_html
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from meters.store import meter_count, meters_flush
from streams.models import ChangeRecord, Gap, Shard, Stream, StreamSource, digest_item_key, sequence_key
from streams.selectors import source_health
from streams.sources import source_add
from tests.support.readers import read_until_idle

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 4, 12, 30, 20, tzinfo=UTC)
API = "/api/sources"


def source_create(name="orders", **fields) -> StreamSource:
    fields = {"region": "eu-west-1", "view_type": "NEW_AND_OLD_IMAGES", "status": StreamSource.Status.ACTIVE, **fields}
    arn = fields.pop("stream_arn", f"arn:aws:dynamodb:eu-west-1:123456789012:table/{name}/stream/1")
    return StreamSource.objects.create(table_name=name, stream_arn=arn, **fields)


def stream_create(source, label="2026-03-04T00:00:00.000") -> Stream:
    return Stream.objects.create(source=source, arn=f"{source.stream_arn}/{label}", label=label)


def shard_create(stream, shard_id, parent="", **fields) -> Shard:
    return Shard.objects.create(stream=stream, shard_id=shard_id, parent_shard_id=parent, **fields)


def records_create(shard, *, received, created=None) -> None:
    """One record per time in `received`; each created `created` before it is received."""
    created = created or timedelta(0)
    start = ChangeRecord.objects.filter(shard=shard).count()
    rows = []
    for number, received_at in enumerate(received, start=start + 1):
        sequence_number = f"{number:021d}"
        item_key = f'{{"pk":{{"S":"k{number}"}}}}'
        rows.append(
            ChangeRecord(
                source_id=shard.stream.source_id,
                shard=shard,
                sequence_number=sequence_number,
                sequence_key=sequence_key(sequence_number),
                event_id=f"event-{number}",
                event_name=ChangeRecord.EventName.INSERT,
                approximate_creation_time=received_at - created,
                size_bytes=64,
                view_type="NEW_AND_OLD_IMAGES",
                keys={"pk": {"S": f"k{number}"}},
                new_image={"pk": {"S": f"k{number}"}},
                item_key=item_key,
                item_hash=digest_item_key(item_key),
                received_at=received_at,
            )
        )
    ChangeRecord.objects.bulk_create(rows)
    # What records_save does alongside each batch: count it, and stamp the shard.
    for received_at in received:
        meter_count(name="shardwatch_records_read_total", labels={"source": shard.stream.source_id}, at=received_at)
    meters_flush()
    newest = max(received)
    Shard.objects.filter(pk=shard.pk).exclude(last_record_at__gt=newest).update(last_record_at=newest)


def only(health, source):
    [found] = [entry for entry in health if entry["id"] == source.pk]
    return found


def find(element, **attributes):
    """The first element under `element` (parsed HTML) with these attribute values."""
    for child in element.children:
        if isinstance(child, str):
            continue
        if all(dict(child.attributes).get(name.replace("_", "-")) == value for name, value in attributes.items()):
            return child
        found = find(child, **attributes)
        if found is not None:
            return found
    return None


def lineage_source(now=NOW):
    """A stream whose parent shard split in two, one child split again, and a shard whose
    parent is no longer known (trimmed from the stream long ago)."""
    source = source_create()
    stream = stream_create(source)
    shard_create(
        stream, "shardId-parent",
        state=Shard.State.FINISHED, finished_at=now - timedelta(hours=2), checkpoint="00000000000000000300",
    )
    shard_create(
        stream, "shardId-left", "shardId-parent",
        state=Shard.State.CLOSED, last_polled_at=now - timedelta(seconds=3), last_polled_by="worker-1:42",
    )
    shard_create(
        stream, "shardId-right", "shardId-parent", lease_owner="abc", lease_expires_at=now + timedelta(minutes=5)
    )
    shard_create(
        stream, "shardId-grandchild", "shardId-left",
        last_polled_at=now - timedelta(seconds=1), last_polled_by="worker-2:7",
    )
    shard_create(
        stream, "shardId-orphan", "shardId-trimmed-long-ago", last_error="ThrottlingException: slow down", error_count=3
    )
    return source


def test_it_sends_anonymous_visitors_to_log_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_it_answers_anonymous_api_calls_with_401_json(client):
    response = client.get(API)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()


def test_it_arranges_shards_by_lineage(owner):
    source = lineage_source()

    [stream] = only(source_health(now=NOW), source)["streams"]

    roots = {shard["shard_id"]: shard for shard in stream["shards"]}
    assert list(roots) == ["shardId-parent", "shardId-orphan"]
    parent = roots["shardId-parent"]
    assert [child["shard_id"] for child in parent["children"]] == ["shardId-left", "shardId-right"]
    left, right = parent["children"]
    assert [child["shard_id"] for child in left["children"]] == ["shardId-grandchild"]
    assert left["children"][0]["depth"] == 2
    assert (parent["state"], left["state"], right["state"]) == ("finished", "closed", "open")
    assert parent["checkpoint"] == "00000000000000000300"
    assert right["lease_held"] and not left["lease_held"]
    assert roots["shardId-orphan"]["parent_shard_id"] == "shardId-trimmed-long-ago"
    assert roots["shardId-orphan"]["error"] == "ThrottlingException: slow down"
    assert stream["shard_counts"] == {"open": 3, "closed": 1, "finished": 1}


def test_it_shows_the_lineage_on_the_page_and_in_the_api(owner):
    source = lineage_source(now=timezone.now())

    page = owner.get("/")
    api = owner.get(API).json()

    html = parse_html(page.content.decode())
    parent = find(html, data_key="shard-shardId-parent")
    left = find(parent, data_key="shard-shardId-left")
    assert left is not None
    assert find(left, data_key="shard-shardId-grandchild") is not None
    assert find(parent, data_key="shard-shardId-orphan") is None
    assert "worker-2:7" in str(find(html, data_key="shard-shardId-grandchild"))
    [entry] = api["sources"]
    assert entry["id"] == source.pk
    assert entry["streams"][0]["shards"][0]["children"][0]["children"][0]["shard_id"] == "shardId-grandchild"
    assert entry["streams"][0]["shards"][0]["children"][1]["lease_held"] is True
    assert api["now"].endswith("Z")


def test_it_shows_gaps_and_the_last_error_on_the_page_and_in_the_api(owner):
    source = source_create(
        status=StreamSource.Status.UNREACHABLE,
        last_error="Could not connect to <script>alert(1)</script> endpoint",
        last_error_at=timezone.now(),
    )
    shard = shard_create(stream_create(source), "shardId-1")
    Gap.objects.create(
        source=source, shard=shard, after_sequence_number="000000000000000000042", reason="Records were trimmed"
    )

    page = owner.get("/").content.decode()
    [entry] = owner.get(API).json()["sources"]

    assert "Endpoint unreachable" in page
    assert "Could not connect to &lt;script&gt;alert(1)&lt;/script&gt; endpoint" in page
    assert "<script>alert" not in page
    assert "Records were trimmed" in page and "000000000000000000042" in page
    assert entry["status"] == "unreachable" and entry["status_display"] == "Endpoint unreachable"
    assert entry["last_error"] == "Could not connect to <script>alert(1)</script> endpoint"
    assert entry["gap_count"] == 1
    assert entry["gaps"] == [
        {
            "id": Gap.objects.get().pk,
            "detected_at": entry["gaps"][0]["detected_at"],
            "shard_id": "shardId-1",
            "after_sequence_number": "000000000000000000042",
            "reason": "Records were trimmed",
        }
    ]


def test_it_computes_lag_from_each_shards_last_poll(owner):
    source = source_create()
    # Polled 2 s ago and caught up; polled 9 s ago, when its newest record was 30 s old.
    shard = shard_create(
        stream_create(source), "shardId-1", last_polled_at=NOW - timedelta(seconds=2),
        iterator_age_s=0, iterator_age_at=NOW - timedelta(seconds=2), discovered_at=NOW - timedelta(hours=1),
    )
    shard_create(
        Stream.objects.get(source=source), "shardId-2", last_polled_at=NOW - timedelta(seconds=9),
        iterator_age_s=30, iterator_age_at=NOW - timedelta(seconds=9), discovered_at=NOW - timedelta(hours=1),
    )
    # Created 90 s and 40 s before now: long idle tables must not read as lagging by it.
    records_create(
        shard, received=[NOW - timedelta(seconds=85), NOW - timedelta(seconds=35)], created=timedelta(seconds=5)
    )

    entry = only(source_health(now=NOW), source)

    assert entry["lag_seconds"] == 39.0
    assert entry["lag_since"] == NOW - timedelta(seconds=39)
    assert entry["lag_rounded"] is False
    assert entry["newest_record_at"] == NOW - timedelta(seconds=40)
    assert entry["last_received_at"] == NOW - timedelta(seconds=35)
    assert entry["last_polled_at"] == NOW - timedelta(seconds=2)
    assert "age of the newest record read" in owner.get("/").content.decode()


def test_it_says_when_record_times_are_rounded_to_the_minute(owner):
    source = source_create(stream_arn="arn:aws:dynamodb:ddblocal:000000000000:table/orders/stream/1")
    shard_create(
        stream_create(source), "shardId-1", iterator_age_s=0, iterator_age_at=NOW - timedelta(seconds=1),
        discovered_at=NOW - timedelta(hours=1),
    )

    entry = only(source_health(now=NOW), source)

    assert entry["lag_rounded"] is True and entry["lag_seconds"] == 1.0
    assert "record times rounded to the minute by DynamoDB Local; lag is from poll times" in owner.get("/").content.decode()


def test_it_has_no_lag_before_the_first_record(owner):
    source = source_create()

    entry = only(source_health(now=NOW), source)

    assert entry["lag_seconds"] is None
    assert entry["newest_record_at"] is None and entry["last_polled_at"] is None
    assert entry["per_minute"] == [0] * 60
    assert "never" in owner.get("/").content.decode()


def test_it_counts_records_per_minute_over_the_last_hour(owner):
    source = source_create()
    quiet = source_create("quiet")
    shard = shard_create(stream_create(source), "shardId-1")
    this_minute = NOW.replace(second=0)  # 12:30:00; the last bucket runs to 12:31
    records_create(
        shard,
        received=[
            this_minute + timedelta(seconds=5),
            this_minute + timedelta(seconds=19),
            this_minute - timedelta(seconds=1),  # 12:29:59
            this_minute - timedelta(minutes=59),  # 11:31:00, the oldest minute shown
            this_minute - timedelta(minutes=59, seconds=1),  # 11:30:59, over an hour ago
            this_minute - timedelta(days=2),
        ],
    )

    health = source_health(now=NOW)

    counts = only(health, source)["per_minute"]
    assert len(counts) == 60
    assert counts[59] == 2
    assert counts[58] == 1
    assert counts[0] == 1
    assert sum(counts) == 4
    assert only(health, source)["records_last_hour"] == 4
    assert only(health, quiet)["per_minute"] == [0] * 60


def test_it_uses_a_fixed_number_of_queries(django_assert_max_num_queries):
    def populate(count):
        for _ in range(count):
            source = source_create(f"table-{StreamSource.objects.count()}")
            stream = stream_create(source)
            parent = shard_create(stream, "shardId-a", state=Shard.State.FINISHED, finished_at=NOW - timedelta(hours=1))
            for child in ("shardId-b", "shardId-c"):
                shard_create(stream, child, parent.shard_id, last_polled_at=NOW)
            records_create(parent, received=[NOW - timedelta(minutes=minute) for minute in range(5)])
            Gap.objects.create(source=source, shard=parent, reason="trimmed")
            stream_create(source, label="older")

    populate(1)
    with CaptureQueriesContext(connection) as one:
        assert len(source_health(now=NOW)) == 1
    populate(4)
    with django_assert_max_num_queries(8):
        assert len(source_health(now=NOW)) == 5
    with CaptureQueriesContext(connection) as five:
        source_health(now=NOW)
    assert len(one) == len(five)


def test_it_hides_shards_finished_over_a_day_ago(owner):
    source = source_create()
    stream = stream_create(source)
    shard_create(stream, "shardId-old", state=Shard.State.FINISHED, finished_at=NOW - timedelta(hours=30))
    shard_create(stream, "shardId-new", "shardId-old", state=Shard.State.FINISHED, finished_at=NOW - timedelta(hours=3))
    shard_create(stream, "shardId-now", "shardId-new")

    [entry] = only(source_health(now=NOW), source)["streams"]

    [root] = entry["shards"]
    assert root["shard_id"] == "shardId-new"  # its parent is not shown, so it is a root
    assert root["children"][0]["shard_id"] == "shardId-now"
    assert entry["finished_hidden"] == 1
    assert entry["shard_counts"]["finished"] == 2


def test_it_selects_only_the_sources_asked_for():
    wanted = source_create("wanted")
    source_create("other")

    health = source_health(now=NOW, source_ids=[wanted.pk])

    assert [entry["table"] for entry in health] == ["wanted"]


def test_it_renders_the_page_without_inline_script_or_style(owner):
    lineage_source(now=timezone.now())

    page = owner.get("/").content.decode()

    assert 'data-api-url="/api/sources"' in page
    assert '<script src="/static/js/overview.js" defer></script>' in page
    # uPlot draws the charts, from the pinned npm package's file, served as the site's own.
    assert '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer></script>' in page
    # and every page's banner of firing alerts refreshes itself (templates/_alert_banner.html).
    assert '<script type="module" src="/static/js/alert_banner.js"></script>' in page
    assert page.count("<script") == 3
    assert " style=" not in page
    uplot = owner.get("/static/vendor/uplot/uPlot.iife.min.js")
    assert uplot.status_code == 200 and b"uPlot" in b"".join(uplot.streaming_content)
    assert owner.get("/static/vendor/uplot/uPlot.min.css").status_code == 200


def test_it_shows_a_source_read_from_dynamodb_local(owner, make_table, dynamodb, django_capture_on_commit_callbacks):
    table = make_table(range_key=False)
    source = source_add(table_name=table, region="us-east-1")
    for number in range(3):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"order-{number}"}})

    # Records read are counted once their batch commits; this test's transaction never does.
    with django_capture_on_commit_callbacks(execute=True):
        assert read_until_idle(source_id=source.pk) == 3
    meters_flush()
    [entry] = owner.get(API).json()["sources"]

    assert entry["table"] == table
    assert entry["status"] == "active"
    assert entry["records_last_hour"] == 3
    assert entry["per_minute"][-1] + entry["per_minute"][-2] == 3
    assert 0 <= entry["lag_seconds"] < 120
    assert entry["last_polled_at"] is not None and entry["last_received_at"] is not None
    [stream] = entry["streams"]
    [shard] = stream["shards"]
    assert shard["shard_id"].startswith("shardId-")
    assert shard["state"] == "open" and shard["checkpoint"]
    assert table in owner.get("/").content.decode()


def readers_panel(page: str) -> list[str]:
    """The text of each part of the page's readers panel (its header, the warning, each reader's
    row, the note), with tags dropped as a browser joins the text. The first panel is the
    page's; the second is its <template>'s."""
    panel = re.search(r'<section class="readers" id="readers".*?</section>', page, re.S).group()
    parts = re.split(r"</header>|</strong>|</p>|</tr>", panel)
    return [html.unescape(re.sub(r"<[^>]+>", "", part)).strip() for part in parts if re.sub(r"<[^>]+>", "", part).strip()]


def readers_and_waiting_shards(now):
    """Two readers, one with markup in its name, and one shard nobody has read since its
    reader's lease ran out a minute ago."""
    stream = stream_create(source_create())
    lease = {"lease_expires_at": now + timedelta(seconds=10)}
    for shard_id in ("shardId-1", "shardId-2"):
        shard_create(
            stream, shard_id, lease_owner="ip-10-0-0-7:812/aa", last_polled_by="ip-10-0-0-7:812",
            last_polled_at=now - timedelta(seconds=2), **lease,
        )
    shard_create(
        stream, "shardId-3", lease_owner="<b>x</b>:1/bb", last_polled_by="<b>x</b>:1",
        last_polled_at=now - timedelta(seconds=4), **lease,
    )
    shard_create(
        stream, "shardId-4", lease_owner="ip-10-0-0-9:5/cc", last_polled_by="ip-10-0-0-9:5",
        lease_expires_at=now - timedelta(minutes=1), discovered_at=now - timedelta(hours=1),
    )


def test_it_shows_the_readers_and_the_shards_without_one_on_the_page_and_in_the_api(owner, settings):
    settings.SHARDWATCH_READER_QUEUE = "orders.readers"
    now = timezone.now()
    readers_and_waiting_shards(now)

    page = owner.get("/").content.decode()
    readers = owner.get(API).json()["readers"]

    warning = "1 shard has no reader: is the reader worker running? (celery -A config worker -Q orders.readers)"
    header, shown_warning, advice, columns, *rows = readers_panel(page)
    assert header == "Readers2 readers · 4 shards · 1 waiting for a reader"
    assert shown_warning == warning
    assert "Procfile's reader process" in advice
    assert columns == "ReaderShardsRenewed"
    assert rows == [
        f"<b>x</b>:11{(now - timedelta(seconds=4)).strftime('%b %-d, %H:%M:%S')}",
        f"ip-10-0-0-7:8122{(now - timedelta(seconds=2)).strftime('%b %-d, %H:%M:%S')}",
    ]
    assert "&lt;b&gt;x&lt;/b&gt;:1" in page and "<b>x" not in page
    assert [(reader["name"], reader["shards"]) for reader in readers["alive"]] == [("<b>x</b>:1", 1), ("ip-10-0-0-7:812", 2)]
    assert readers["alive"][1]["owner"] == "ip-10-0-0-7:812/aa"
    assert readers["alive"][1]["renewed_at"].endswith("Z")
    assert (readers["shards"], readers["waiting"], readers["waiting_long"]) == (4, 1, 1)
    assert readers["reader_queue"] == "orders.readers"
    assert readers["warning"] == warning


def test_it_says_when_no_reader_holds_a_shard(owner):
    source_create()

    page = owner.get("/").content.decode()
    readers = owner.get(API).json()["readers"]

    assert readers_panel(page) == ["Readers0 readers · 0 shards", "No reader holds a shard."]
    assert readers == {
        "alive": [], "shards": 0, "waiting": 0, "waiting_long": 0, "reader_queue": readers["reader_queue"], "warning": ""
    }

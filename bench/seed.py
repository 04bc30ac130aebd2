"""A million change records on PostgreSQL, made by the database itself, for the feed queries.

Rows come from one INSERT ... SELECT over generate_series: four sources of different volume,
two shards each, orders-like images in typed DynamoDB JSON (the shape of
bench.workload.order_item), INSERT/MODIFY/REMOVE with the diffs and changed_paths that
streams.ingest stores for them, and some TTL deletes. Most items change two or three times;
25 "hot" items per source change hundreds of times.

What needs Python (item_key in streams.codec's canonical form, and its SHA-1 digest, which
PostgreSQL cannot compute without pgcrypto) is made here for every item and copied into a
scratch table that the INSERT looks each row's item up in. Images and diffs are format()
templates made here too, filled per row and parsed once: several times faster than nesting
jsonb_build_object calls.

The seed is reused: the table comment records a digest of the generator's SQL and parameters,
of ChangeRecord's columns and of the row count, and a run that finds the same comment and
count skips seeding.
"""

import hashlib
import io
import json
import time

from django.db import connection, transaction

from streams import codec
from streams.models import ChangeRecord, Shard, Stream, StreamSource, digest_item_key

RECORDS = 1_000_000
SHARDS_PER_SOURCE = 2
HOT_ITEMS = 25
# Record g was written at START + g * STEP_MS: a million records span about six days.
START = "2026-11-20T00:00:00Z"
STEP_MS = 500

# (table, key schema, distinct items, share of the records in tenths). Index = source number.
SOURCES = [
    ("bench-feed-orders", ["pk"], 200_000, 5),
    ("bench-feed-customers", ["pk", "sk"], 50_000, 2),
    ("bench-feed-inventory", ["pk"], 50_000, 2),
    ("bench-feed-sessions", ["pk"], 50_000, 1),
]
NAMES = ["Ada Lovelace", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"]

# format() placeholders: first what a change may touch, then what depends on the item alone.
STATUS, TOTAL, CITY, QTY, TAGS, TRACKING, PROMO = (f"%{number}$s" for number in range(1, 8))
PK, CREATED_AT, NAME, NUMBER, ZIP, SKU1, PRICE1, SKU2, QTY2, PRICE2, SIGNATURE, GIFT = (
    f"%{number}$s" for number in range(8, 20)
)
# The SQL that gives placeholders 8-19 for a row of the item CTE below.
_ITEM_ARGS = "pk_json, created_at, name, n, zip, sku1, price1, sku2, qty2, price2, signature, gift"


def item_keys(source: int, number: int) -> dict:
    if source == 0:
        return {"pk": {"S": f"ORDER#{number:07d}"}}
    if source == 1:
        return {"pk": {"S": f"CUSTOMER#{number:06d}"}, "sk": {"S": "PROFILE"}}
    if source == 2:
        return {"pk": {"S": f"SKU-{number:05d}"}}
    return {"pk": {"S": f"SESSION#{hashlib.md5(str(number).encode()).hexdigest()[:16]}"}}


def item_key_of(source: int, number: int) -> str:
    return codec.item_key(item_keys(source, number))


def _templates(*, with_sort_key: bool) -> dict[str, str]:
    """An item's image, the diff of its INSERT and of its REMOVE, as format() templates, and the
    changed_paths of those two. Diffs list attributes in name order, as streams.diff does."""
    attributes = {
        "pk": PK,
        "status": f'{{"S":"{STATUS}"}}',
        "total": f'{{"N":"{TOTAL}"}}',
        "created_at": f'{{"N":"{CREATED_AT}"}}',
        "customer": (
            f'{{"M":{{"name":{{"S":"{NAME}"}},"email":{{"S":"customer{NUMBER}@example.com"}},'
            f'"address":{{"M":{{"city":{{"S":"{CITY}"}},"zip":{{"S":"{ZIP}"}}}}}}}}}}'
        ),
        "items": (
            f'{{"L":[{{"M":{{"sku":{{"S":"SKU-{SKU1}"}},"qty":{{"N":"{QTY}"}},"price":{{"N":"{PRICE1}"}}}}}},'
            f'{{"M":{{"sku":{{"S":"SKU-{SKU2}"}},"qty":{{"N":"{QTY2}"}},"price":{{"N":"{PRICE2}"}}}}}}]}}'
        ),
        "tags": f'{{"SS":[{TAGS}]}}',
        "signature": f'{{"B":"{SIGNATURE}"}}',
        "gift": f'{{"BOOL":{GIFT}}}',
        "tracking": f'{{"S":"{TRACKING}"}}',
    }
    if with_sort_key:
        attributes["sk"] = '{"S":"PROFILE"}'
    attributes = dict(sorted(attributes.items()))
    return {
        "image": "{" + ",".join(f'"{name}":{value}' for name, value in attributes.items()) + PROMO + "}",
        "insert_diff": "[" + ",".join(
            f'{{"path":"{name}","kind":"added","old":null,"new":{value}}}' for name, value in attributes.items()
        ) + "]",
        "remove_diff": "[" + ",".join(
            f'{{"path":"{name}","kind":"removed","old":{value},"new":null}}' for name, value in attributes.items()
        ) + "]",
        "all_paths": "\n" + "\n".join(attributes) + "\n",
    }


def _template_sql(name: str) -> str:
    """`CASE WHEN s = 1 ...`: the template for the row's source, as SQL."""
    plain, with_sort_key = _templates(with_sort_key=False)[name], _templates(with_sort_key=True)[name]
    quote = "E'" if name == "all_paths" else "$t$"
    close = "'" if name == "all_paths" else "$t$"
    return f"CASE WHEN s = 1 THEN {quote}{with_sort_key}{close} ELSE {quote}{plain}{close} END"


# One row per generate_series value g, in id order (ids are g, times rise with g). OFFSET 0
# keeps each step a subquery of its own, so a value used many times (an image) is computed once
# per row instead of once per use.
#   h1 -> source (by share), shard, hot or not, item number
#   h2 -> event name, what a MODIFY changes, the values, TTL deletes
_INSERT = """
WITH r AS (
  SELECT g, h1, h2,
         CASE WHEN h1 % 10 < 5 THEN 0 WHEN h1 % 10 < 7 THEN 1 WHEN h1 % 10 < 9 THEN 2 ELSE 3 END AS s,
         (h1 / 10) % {shards} AS shard_index,
         (h1 / 20) % 20 = 0 AS hot,
         h2 % 100 AS ev,
         (h2 / 100) % 100 AS kind,
         (h2 / 10000) % 2000 = 0 AS promo,
         (h2 / 20000000) % 4 AS st
  FROM (SELECT g, hashint8extended(g, 1) & 9223372036854775807 AS h1,
               hashint8extended(g, 2) & 9223372036854775807 AS h2
        FROM generate_series(1, {records}) AS g) AS base
  OFFSET 0
), e AS (
  SELECT r.*,
         CASE WHEN hot THEN (h1 / 400) % {hot_items} ELSE (h1 / 400) % (ARRAY[{item_counts}])[s + 1] END AS n,
         CASE WHEN hot THEN (CASE WHEN ev < 1 THEN 'INSERT' WHEN ev < 99 THEN 'MODIFY' ELSE 'REMOVE' END)
              ELSE (CASE WHEN ev < 30 THEN 'INSERT' WHEN ev < 90 THEN 'MODIFY' ELSE 'REMOVE' END) END AS event_name,
         (ARRAY['PENDING','PAID','SHIPPED','DELIVERED','RETURNED'])[st + 2] AS status_new,
         (ARRAY['PENDING','PAID','SHIPPED','DELIVERED','RETURNED'])[st + 1] AS status_old,
         (100 + (h2 / 3) % 99900) || '.' || lpad(((h2 / 5) % 100)::text, 2, '0') AS total_new,
         (100 + (h2 / 17) % 99900) || '.00' AS total_old,
         (ARRAY['Oslo','Lyon','Austin','Kyoto','Porto'])[1 + (h2 / 7) % 5] AS city_new,
         (ARRAY['Oslo','Lyon','Austin','Kyoto','Porto'])[1 + (h2 / 7 + 1) % 5] AS city_old,
         (1 + (h2 / 11) % 5)::text AS qty_new,
         (1 + (h2 / 11 + 1) % 5)::text AS qty_old,
         '"b2b","' || (ARRAY['express','fragile','gift','promo'])[1 + (h2 / 13) % 4] || '"' AS tags_new,
         'TRK' || (h2 % 1000000000) AS tracking_new,
         'TRK' || ((h2 / 19) % 1000000000) AS tracking_old,
         (ARRAY[{source_ids}])[s + 1] AS source_pk,
         (ARRAY[{shard_ids}])[s * {shards} + shard_index + 1] AS shard_pk,
         timestamptz '{start}' + g * interval '{step_ms} milliseconds' AS created
  FROM r
  OFFSET 0
), i AS (
  SELECT e.*, it.item_key, it.item_hash, it.partition_key, it.pk_json,
         (1790000000 + e.n)::text AS created_at,
         (ARRAY[{names}])[1 + e.n % 4] AS name,
         (10000 + (e.n * 7919) % 90000)::text AS zip,
         (1 + e.n % 500)::text AS sku1, (1 + e.n % 300) || '.99' AS price1,
         (1 + (e.n * 31) % 500)::text AS sku2, (1 + e.n % 5)::text AS qty2, (1 + (e.n * 31) % 300) || '.99' AS price2,
         encode(decode(md5(e.n::text), 'hex'), 'base64') AS signature,
         CASE WHEN e.n % 5 = 0 THEN 'true' ELSE 'false' END AS gift
  FROM e JOIN bench_seed_items AS it ON it.s = e.s AND it.n = e.n
  OFFSET 0
), images AS (
  SELECT i.*,
         format({image}, status_new, total_new, city_new, qty_new, tags_new, tracking_new,
                CASE WHEN promo AND event_name = 'MODIFY' THEN ',"promo":{{"S":"SPRING"}}' ELSE '' END,
                {item_args}) AS image_new,
         CASE WHEN event_name = 'MODIFY' THEN format({image},
           CASE WHEN kind < 60 AND NOT promo THEN status_old ELSE status_new END,
           CASE WHEN kind < 60 AND NOT promo THEN total_old ELSE total_new END,
           CASE WHEN kind BETWEEN 60 AND 79 AND NOT promo THEN city_old ELSE city_new END,
           CASE WHEN kind BETWEEN 80 AND 94 AND NOT promo THEN qty_old ELSE qty_new END,
           CASE WHEN kind >= 95 AND NOT promo THEN '"b2b"' ELSE tags_new END,
           CASE WHEN kind < 60 AND NOT promo THEN tracking_old ELSE tracking_new END,
           '', {item_args}) END AS image_old_modify,
         CASE event_name
           WHEN 'INSERT' THEN format({insert_diff}, status_new, total_new, city_new, qty_new, tags_new, tracking_new, '', {item_args})
           WHEN 'REMOVE' THEN format({remove_diff}, status_new, total_new, city_new, qty_new, tags_new, tracking_new, '', {item_args})
           ELSE CASE
             WHEN promo THEN '[{{"path":"promo","kind":"added","old":null,"new":{{"S":"SPRING"}}}}]'
             WHEN kind < 60 THEN format(
               '[{{"path":"status","kind":"changed","old":{{"S":"%s"}},"new":{{"S":"%s"}}}},'
               '{{"path":"total","kind":"changed","old":{{"N":"%s"}},"new":{{"N":"%s"}}}},'
               '{{"path":"tracking","kind":"changed","old":{{"S":"%s"}},"new":{{"S":"%s"}}}}]',
               status_old, status_new, total_old, total_new, tracking_old, tracking_new)
             WHEN kind < 80 THEN format(
               '[{{"path":"customer.address.city","kind":"changed","old":{{"S":"%s"}},"new":{{"S":"%s"}}}}]', city_old, city_new)
             WHEN kind < 95 THEN format(
               '[{{"path":"items[0].qty","kind":"changed","old":{{"N":"%s"}},"new":{{"N":"%s"}}}}]', qty_old, qty_new)
             ELSE format(
               '[{{"path":"tags","kind":"changed","old":{{"SS":["b2b"]}},"new":{{"SS":[%s]}},"added":["%s"],"removed":[]}}]',
               tags_new, split_part(tags_new, '"', 4))
           END
         END AS diff_text,
         CASE event_name
           WHEN 'MODIFY' THEN CASE WHEN promo THEN E'\\npromo\\n' WHEN kind < 60 THEN E'\\nstatus\\ntotal\\ntracking\\n'
                                   WHEN kind < 80 THEN E'\\ncustomer.address.city\\n' WHEN kind < 95 THEN E'\\nitems[0].qty\\n'
                                   ELSE E'\\ntags\\n' END
           ELSE {all_paths}
         END AS changed_paths,
         event_name = 'REMOVE' AND h2 % 7 = 0 AS ttl,
         (100000000000000000000 + g * 100)::text AS seq
  FROM i
  OFFSET 0
)
INSERT INTO streams_changerecord (
  id, source_id, shard_id, sequence_number, sequence_key, event_id, event_name, event_version,
  approximate_creation_time, size_bytes, view_type, keys, old_image, new_image, item_key, item_hash,
  partition_key, changed_paths, diff, diff_complete, user_identity, is_ttl_delete, received_at, decode_error,
  images_as_sent, shape_error
) OVERRIDING SYSTEM VALUE
SELECT
  g, source_pk, shard_pk, seq, lpad(seq, {sequence_width}, '0'), md5(g::text), event_name, '1.1',
  created,
  octet_length(image_new) + coalesce(octet_length(image_old_modify), 0),
  'NEW_AND_OLD_IMAGES', item_key::jsonb,
  CASE event_name WHEN 'INSERT' THEN NULL WHEN 'REMOVE' THEN image_new::jsonb ELSE image_old_modify::jsonb END,
  CASE event_name WHEN 'REMOVE' THEN NULL ELSE image_new::jsonb END,
  item_key, item_hash, partition_key, changed_paths, diff_text::jsonb, true,
  CASE WHEN ttl THEN '{{"Type":"Service","PrincipalId":"dynamodb.amazonaws.com"}}'::jsonb END,
  ttl, created + interval '300 milliseconds', '',
  NULL, ''
FROM images
"""

# Columns the generator fills; a column added to ChangeRecord later must be added here too.
FILLED = {
    "id", "source_id", "shard_id", "sequence_number", "sequence_key", "event_id", "event_name", "event_version",
    "approximate_creation_time", "size_bytes", "view_type", "keys", "old_image", "new_image", "item_key",
    "item_hash", "partition_key", "changed_paths", "diff", "diff_complete", "user_identity", "is_ttl_delete",
    "received_at", "decode_error", "images_as_sent", "shape_error",
}


def _columns() -> list[str]:
    return sorted(field.column for field in ChangeRecord._meta.concrete_fields)


def seed_version(records: int) -> str:
    """Names what a seed holds: changes to the generator or to ChangeRecord's columns give a new
    version and a new seed; changes to comments or to this module's other code do not."""
    inputs = [
        _INSERT, *(_template_sql(name) for name in ("image", "insert_diff", "remove_diff", "all_paths")),
        repr(SOURCES), repr(NAMES), str(HOT_ITEMS), str(SHARDS_PER_SOURCE), START, str(STEP_MS),
        *(item_key_of(source, 7) for source in range(len(SOURCES))), *_columns(),
    ]
    digest = hashlib.sha1("\n".join(inputs).encode()).hexdigest()[:12]
    return f"shardwatch-bench-seed {digest} records={records}"


def seeded_sources() -> list[StreamSource]:
    by_name = {source.table_name: source for source in StreamSource.objects.filter(table_name__in=[s[0] for s in SOURCES])}
    return [by_name[name] for name, *_ in SOURCES]


def _is_seeded(version: str, records: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description('streams_changerecord'::regclass, 'pg_class')")
        (comment,) = cursor.fetchone()
        if comment != version:
            return False
        cursor.execute("SELECT count(*) FROM streams_changerecord")
        (count,) = cursor.fetchone()
    return count == records and StreamSource.objects.filter(table_name__in=[s[0] for s in SOURCES]).count() == len(SOURCES)


def feed_seed(*, records: int = RECORDS) -> dict:
    """Seed unless an identical seed is in place. Returns what was done and how long it took."""
    if connection.vendor != "postgresql":
        raise RuntimeError("The feed benchmark seeds PostgreSQL only.")
    missing = set(_columns()) - FILLED
    if missing:
        raise RuntimeError(f"ChangeRecord has columns bench/seed.py does not fill: {sorted(missing)}; add them to the seed.")
    version = seed_version(records)
    started = time.monotonic()
    if _is_seeded(version, records):
        return {"seeded": False, "records": records, "seconds": round(time.monotonic() - started, 1), "version": version}
    print(f"seeding {records:,} change records (reused by later runs) ...", flush=True)
    steps: dict[str, float] = {}
    step_started = time.monotonic()

    def step(name: str) -> None:
        nonlocal step_started
        now = time.monotonic()
        steps[name] = round(now - step_started, 1)
        step_started = now

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        (superuser,) = cursor.fetchone()
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        # Keep generate_series order through the item look-up: the heap then holds rows in id
        # order, as a table filled by workers over time does.
        cursor.execute("SET LOCAL enable_hashjoin = off")
        cursor.execute("SET LOCAL enable_mergejoin = off")
        if superuser:
            # The foreign keys point at rows made just below; checking a million of them at
            # commit only costs time.
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("TRUNCATE streams_changerecord, streams_gap, streams_shard, streams_stream, streams_streamsource CASCADE")
        source_ids, shard_ids = _make_sources()
        _make_items(cursor)
        step("items")
        # Building the secondary indexes once at the end is several times faster than keeping
        # them up to date row by row. Their definitions come from the catalog, so they come
        # back exactly as the migrations made them; a failure rolls the drop back too.
        cursor.execute(
            """
            SELECT i.indexname, i.indexdef FROM pg_indexes AS i
            WHERE i.tablename = 'streams_changerecord'
              AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)
            """
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(
            _INSERT.format(
                records=records,
                shards=SHARDS_PER_SOURCE,
                hot_items=HOT_ITEMS,
                names=", ".join(f"'{name}'" for name in NAMES),
                item_args=_ITEM_ARGS,
                image=_template_sql("image"),
                insert_diff=_template_sql("insert_diff"),
                remove_diff=_template_sql("remove_diff"),
                all_paths=_template_sql("all_paths"),
                item_counts=", ".join(str(count) for _, _, count, _ in SOURCES),
                source_ids=", ".join(map(str, source_ids)),
                shard_ids=", ".join(map(str, shard_ids)),
                sequence_width=ChangeRecord._meta.get_field("sequence_key").max_length,
                start=START,
                step_ms=STEP_MS,
            )
        )
        inserted = cursor.rowcount
        if inserted != records:
            raise RuntimeError(f"seed inserted {inserted} rows, expected {records}")
        step("insert")
        for _, definition in indexes:
            cursor.execute(definition)
        cursor.execute("DROP TABLE bench_seed_items")
        cursor.execute("SELECT setval(pg_get_serial_sequence('streams_changerecord', 'id'), %s)", [records])
        cursor.execute(f"COMMENT ON TABLE streams_changerecord IS '{version}'")
        step("indexes")
    step("commit")
    # As autovacuum leaves a table that has stopped growing: visibility map set (index-only
    # scans) and fresh statistics.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) streams_changerecord")
    step("vacuum_analyze")
    print(f"seeded in {time.monotonic() - started:.1f} s: {steps}", flush=True)
    return {
        "seeded": True, "records": records, "seconds": round(time.monotonic() - started, 1), "steps": steps,
        "version": version,
    }


def _make_sources() -> tuple[list[int], list[int]]:
    """The sources, streams and shards, as ids: sources by number, shards by number * shards + index."""
    source_ids, shard_ids = [], []
    for number, (table, key_schema, _, _) in enumerate(SOURCES):
        arn = f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/2026-11-20T00:00:00.000"
        source = StreamSource.objects.create(
            table_name=table, region="us-east-1", stream_arn=arn, view_type="NEW_AND_OLD_IMAGES",
            key_schema=key_schema, status=StreamSource.Status.ACTIVE, retention_days=3650,
        )
        stream = Stream.objects.create(source=source, arn=arn, label="2026-11-20T00:00:00.000")
        source_ids.append(source.pk)
        for index in range(SHARDS_PER_SOURCE):
            shard = Shard.objects.create(stream=stream, shard_id=f"shardId-00000001790000000000-{number:04d}{index:04d}")
            shard_ids.append(shard.pk)
    return source_ids, shard_ids


def _make_items(cursor) -> None:
    # A plain table, not a temporary one: temporary tables live in temp_buffers (8 MB), and a
    # million look-ups into one larger than that read from disk. Dropped in the seeding transaction.
    cursor.execute("DROP TABLE IF EXISTS bench_seed_items")
    cursor.execute(
        "CREATE UNLOGGED TABLE bench_seed_items (s int, n int, item_key text, item_hash text, partition_key text, "
        "pk_json text)"
    )
    buffer = io.StringIO()
    for number, (_, key_schema, count, _) in enumerate(SOURCES):
        for n in range(count):
            keys = item_keys(number, n)
            key = codec.item_key(keys)
            hash_value = keys[key_schema[0]]
            # COPY text format: no tab or backslash occurs in these values.
            buffer.write(
                f"{number}\t{n}\t{key}\t{digest_item_key(key)}\t{codec.to_display(hash_value)}\t"
                f"{json.dumps(hash_value, separators=(',', ':'))}\n"
            )
    buffer.seek(0)
    with cursor.cursor.copy("COPY bench_seed_items FROM STDIN") as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)
    cursor.execute("ALTER TABLE bench_seed_items ADD PRIMARY KEY (s, n)")
    cursor.execute("ANALYZE bench_seed_items")

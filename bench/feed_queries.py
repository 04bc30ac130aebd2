"""Server time of the feed page, the records API and the item-history API on a million records.

Runs in a process of its own on a database of its own (`<bench database>_feed`): the other
benchmarks empty the tables they use, and the million seeded records are kept between runs.
`python -m bench.run feed` starts it; `python -m bench.feed_process OUT.json` is that process.

What is timed: django.test.Client requests in this process, logged in, through the whole
middleware stack, the view, its queries and the template or JSON encoding, on a warm database
and a persistent connection (CONN_MAX_AGE, as daphne has). Not timed: the ASGI server and the
network, a few hundred microseconds on loopback. Each query's statements are run again under
EXPLAIN (ANALYZE, BUFFERS) and the plans written to test-artifacts/explain/<name>.txt.
"""

import re
import statistics
import time
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bench import seed
from bench.common import ARTIFACTS, percentile

EXPLAIN_DIR = ARTIFACTS / "explain"
RUNS = 20
WARMUPS = 2
# A query slower than this on its warm-up is timed fewer times, so one bad plan cannot stretch
# the whole benchmark; its p95 is still reported.
SLOW_MS = 1000
SLOW_RUNS = 5
TABLE = "streams_changerecord"


def _queries() -> list[tuple[str, str]]:
    """(name, URL) of every request timed."""
    orders, customers, _, sessions = seed.seeded_sources()
    feed, api, item = reverse("dashboard:feed"), reverse("dashboard:api_records"), reverse("dashboard:api_item", args=[orders.pk])
    # Ids run 1..N in time order, so `before` this id pages back past 95% of the records.
    deep = seed.RECORDS // 20
    hot_key = seed.item_key_of(0, 7)  # one of the 25 hot orders: about a thousand changes
    cold_key = seed.item_key_of(1, 12_345)  # a customer profile: a few changes

    def url(base, **params):
        return base + ("?" + urlencode(params, doseq=True) if params else "")

    return [
        ("feed_page", url(feed)),
        ("feed_page_source_event", url(feed, source=orders.pk, event="REMOVE")),
        ("feed_page_key_prefix", url(feed, key="ORDER#00012", key_match="prefix")),
        ("feed_page_path", url(feed, path="customer.address")),
        ("feed_page_path_rare", url(feed, path="promo")),
        ("api_records", url(api)),
        ("api_records_filtered", url(api, source=customers.pk, event="MODIFY", path="status")),
        ("api_records_key_equals", url(api, key="ORDER#0000007")),
        ("api_records_before_deep", url(api, before=deep, limit=50)),
        ("api_records_before_deep_filtered", url(api, source=sessions.pk, event="INSERT", before=deep, limit=50)),
        ("api_item_history_hot", url(item, key=hot_key)),
        ("api_item_history", url(reverse("dashboard:api_item", args=[customers.pk]), key=cold_key)),
    ]


def _client():
    user, _ = get_user_model().objects.get_or_create(username="bench-feed", defaults={"is_staff": True})
    # 127.0.0.1 is in ALLOWED_HOSTS; the test client's default "testserver" is not.
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return client


class _DatabaseTime:
    """Adds up the time spent in the database driver during a request."""

    def __init__(self):
        self.seconds = 0.0
        self.statements = 0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.statements += 1


def _timed_get(client, url: str) -> tuple[float, float, int]:
    """(total ms, database ms, statements) of one request, which must succeed."""
    clock = _DatabaseTime()
    with connection.execute_wrapper(clock):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}: {response.content[:300]!r}")
    return elapsed * 1000, clock.seconds * 1000, clock.statements


def _explain(client, name: str, url: str) -> dict:
    """Run the request once capturing its SQL, EXPLAIN (ANALYZE, BUFFERS) each statement on the
    change record table, write the plans, and say which indexes they use and any seq scans."""
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    statements = [query["sql"] for query in captured.captured_queries if TABLE in query["sql"]]
    lines = [f"# {name}", f"# GET {url}", ""]
    indexes: list[str] = []
    seq_scan, filtered = False, 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [TABLE])
        own = {row[0] for row in cursor.fetchall()}
        for number, sql in enumerate(statements, 1):
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            lines += [f"-- statement {number}", sql, "", plan, ""]
            indexes += re.findall(r"(?:Index(?: Only)? Scan(?: Backward)? using|Bitmap Index Scan on) (\w+)", plan)
            seq_scan |= bool(re.search(rf"Seq Scan on {TABLE}\b", plan))
            filtered += rows_filtered(plan)
    EXPLAIN_DIR.mkdir(parents=True, exist_ok=True)
    (EXPLAIN_DIR / f"{name}.txt").write_text("\n".join(lines))
    return {"indexes": sorted(set(indexes) & own), "seq_scan": seq_scan, "rows_filtered": filtered}


def _round(value: float) -> float:
    return round(value, 1)


def _pooled_percentile(samples: dict[str, list[float]], fraction: float) -> float:
    """The percentile over every query's samples, each query weighing the same however many
    times it ran (a slow query runs fewer times)."""
    weighted = sorted((value, 1 / len(values)) for values in samples.values() for value in values)
    total = sum(weight for _, weight in weighted)
    seen = 0.0
    for value, weight in weighted:
        seen += weight
        if seen >= fraction * total - 1e-9:
            return value
    return weighted[-1][0]


_SCAN_NODE = re.compile(rf"on {TABLE}\b.*\(actual time=\S+ rows=\d+ loops=(\d+)\)")
_REMOVED = re.compile(r"Rows Removed by Filter: (\d+)")


def rows_filtered(plan: str) -> int:
    """Rows of the change record table that scans read and then threw away: a scan that walks
    most of the table to find a few rows shows here even when it is an index scan."""
    # A node's details follow its line up to the next "->" (its first child or the next node).
    # Not indentation: a LIKE pattern with a newline in it breaks the lines of its Filter.
    total, loops = 0, 0
    for line in plan.splitlines():
        node = _SCAN_NODE.search(line)
        if node:
            loops = int(node.group(1))
            continue
        if line.lstrip().startswith("->"):
            loops = 0
        removed = _REMOVED.search(line)
        if removed and loops:
            total += int(removed.group(1)) * loops
    return total


def bench_feed_queries() -> dict:
    seeded = seed.feed_seed()
    if seeded["seeded"]:
        print(f"seeded {seeded['records']:,} records in {seeded['seconds']} s", flush=True)
    else:
        print(f"reusing the {seeded['records']:,} records seeded earlier ({seeded['version']})", flush=True)
    client = _client()
    queries = _queries()
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name, _ in queries}
    runs: dict[str, int] = {}
    for name, url in queries:
        warmups = [_timed_get(client, url) for _ in range(WARMUPS)]
        runs[name] = SLOW_RUNS if warmups[-1][0] > SLOW_MS else RUNS
    # Round robin, so that drift in the machine's load falls on every query alike.
    for round_number in range(RUNS):
        for name, url in queries:
            if round_number < runs[name]:
                samples[name].append(_timed_get(client, url))
    per_query = {}
    for name, url in queries:
        totals = [total for total, _, _ in samples[name]]
        per_query[name] = {
            "url": url,
            "runs": len(totals),
            "ms_p50": _round(percentile(totals, 0.50)),
            "ms_p95": _round(percentile(totals, 0.95)),
            "db_ms_p50": _round(statistics.median(db for _, db, _ in samples[name])),
            "statements": samples[name][0][2],
        }
    for name, url in queries:
        per_query[name].update(_explain(client, name, url))
    totals = {name: [total for total, _, _ in samples[name]] for name in samples}
    worst = max(per_query, key=lambda name: per_query[name]["ms_p95"])
    result = {
        "feed_query_ms_p50": _round(_pooled_percentile(totals, 0.50)),
        "feed_query_ms_p95": _round(_pooled_percentile(totals, 0.95)),
        "feed_query_worst": worst,
        "feed_query_worst_ms_p95": per_query[worst]["ms_p95"],
        "feed_query_ms_p95_without_worst": _round(
            _pooled_percentile({name: values for name, values in totals.items() if name != worst}, 0.95)
        ),
        "feed_query_seq_scans": sorted(name for name, query in per_query.items() if query["seq_scan"]),
        # Scans that read past a tenth of the table to answer: what an index should serve.
        "feed_query_wide_scans": sorted(
            name for name, query in per_query.items() if query["rows_filtered"] > seed.RECORDS // 10
        ),
        "feed_queries": per_query,
        "feed_seed_records": seeded["records"],
        "feed_seed_reused": not seeded["seeded"],
        "feed_seed_s": seeded["seconds"],
    }
    _print_table(per_query)
    return result


def _print_table(per_query: dict) -> None:
    print(
        f"{'query':34} {'runs':>4} {'p50 ms':>8} {'p95 ms':>8} {'db p50':>8} {'filtered':>9}  indexes (seq scan)",
        flush=True,
    )
    for name, query in per_query.items():
        scan = " SEQ SCAN" if query["seq_scan"] else ""
        print(
            f"{name:34} {query['runs']:>4} {query['ms_p50']:>8} {query['ms_p95']:>8} {query['db_ms_p50']:>8} "
            f"{query['rows_filtered']:>9}  {', '.join(query['indexes'])}{scan}",
            flush=True,
        )

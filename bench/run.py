"""`make bench`: ingestion throughput against a naive pipeline, write-to-database latency
through real Celery workers, feed and API query times on a million records, websocket fan-out
to 100 clients, write-to-browser latency in Chromium, and the stream readers at hundreds and
thousands of shards (bench.readers), from a failing handler to its alert (bench.alerts), and the
/metrics scrape at 1,000 shards and 100 triggers (bench.metrics). Prints the figures and merges them
into bench-results.json.

`python -m bench.run [ingest] [latency] [feed] [fanout] [browser] [filters] [triggers] [readers] [alerts] [metrics]`
runs the ones named; no name runs them all, in that order.

This module is the runner only. It imports no models at its top: it creates the bench
database and sets Django up first, and it is also imported afresh, as the main module, by the
spawned writer process (bench.writer), where Django is never set up.
"""

import json
import os
import subprocess
import sys
import time

import django
from django.core.management import call_command

from bench.common import ARTIFACTS, RESULTS, ROOT, ensure_database, feed_database_url
from streams import aws
from tests.support import dynamodb_local


def bench_feed() -> dict:
    """bench.feed_queries in a process of its own (bench.feed_process), where Django is set
    up on the feed database."""
    out = ARTIFACTS / "bench-feed.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "DATABASE_URL": feed_database_url(os.environ["DATABASE_URL"])}
    subprocess.run([sys.executable, "-m", "bench.feed_process", str(out)], cwd=ROOT, env=env, check=True)
    return json.loads(out.read_text())


def benchmarks() -> dict:
    """Every benchmark by name, in the order they run. Call once Django is set up."""
    # Imported here, not at the top: these modules import models, which need django.setup(),
    # and this module must stay importable without it (see the module docstring).
    from bench import alerts, browser, fanout, filters, ingest, latency, masking, metrics, readers, triggers

    return {
        "ingest": ingest.bench_ingest,
        "latency": latency.bench_write_to_db,
        "feed": bench_feed,
        "fanout": fanout.bench_fanout,
        "browser": browser.bench_write_to_browser,
        "filters": filters.bench_filters,
        "masking": masking.bench_masking,
        "triggers": triggers.bench_triggers,
        "readers": readers.bench_readers,
        "alerts": alerts.bench_alert_notify,
        "metrics": metrics.bench_metrics_scrape,
    }


NAMES = ["ingest", "latency", "feed", "fanout", "browser", "filters", "masking", "triggers", "readers", "alerts", "metrics"]

NEEDS_DYNAMODB = {"ingest", "latency", "fanout", "browser", "triggers", "readers", "alerts"}


def merge_results(results: dict) -> None:
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged.update(results)
    RESULTS.write_text(json.dumps(merged, indent=2) + "\n")


def main() -> None:
    unknown = [name for name in sys.argv[1:] if name not in NAMES]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    selected = [name for name in NAMES if not sys.argv[1:] or name in sys.argv[1:]]
    ensure_database()
    django.setup()
    runs = benchmarks()
    call_command("migrate", verbosity=0)
    (ROOT / "var").mkdir(exist_ok=True)
    ARTIFACTS.mkdir(exist_ok=True)
    results = {}
    for name in selected:
        print(f"== {name}", flush=True)
        started, load_before = time.monotonic(), os.getloadavg()[0]
        # A DynamoDB Local of its own for each benchmark: one that has served the others is
        # slower (their tables and streams stay in it), and the figures would depend on order.
        ddb = None
        if name in NEEDS_DYNAMODB:
            port = dynamodb_local.free_port()
            ddb = dynamodb_local.start(port=port, log_path=ARTIFACTS / f"bench-dynamodb-local-{name}.log")
            os.environ.update(dynamodb_local.environment(port))
            aws.forget_clients()  # clients made for an earlier instance point at its port
        try:
            figures = runs[name]()
        finally:
            if ddb is not None:
                dynamodb_local.stop(ddb)
        figures[f"{name}_bench_s"] = round(time.monotonic() - started, 1)
        # The machine's 1-minute load average before and after: on 2 cores, anything else
        # running (a test suite, a browser) shows in every figure above.
        figures[f"{name}_machine_load"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        print(json.dumps(figures, indent=2), flush=True)
        # Merged one by one, so a benchmark that fails keeps the figures of those before it.
        merge_results(figures)
        results.update(figures)
    headline = {name: value for name, value in results.items() if not isinstance(value, (dict, list))}
    print(json.dumps(headline, indent=2))
    print(f"written to {RESULTS.name}")


if __name__ == "__main__":
    main()

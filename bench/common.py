"""What every benchmark shares: where results go, the bench database, percentiles and a
clean slate. Every bench module imports this, and this imports no other bench module, so
the benchmarks never import one another through bench.run.

Safe to import before Django is set up (bench.run and bench.feed_process do, to create the
database first): it imports no models.
"""

import os
from pathlib import Path

import psycopg
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
RESULTS = ROOT / "bench-results.json"


def ensure_database() -> None:
    """Create the database DATABASE_URL names unless it exists (PostgreSQL)."""
    url = os.environ["DATABASE_URL"]
    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')


def feed_database_url(url: str) -> str:
    """The feed benchmark's own database, next to the bench database: the other benchmarks
    empty the tables, and the million seeded records are kept between runs."""
    base, name = url.rsplit("/", 1)
    return f"{base}/{name}_feed"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def reset_tables() -> None:
    """Empty the stream tables (and, by CASCADE, what hangs off them) of the bench database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE streams_changerecord, streams_gap, streams_shard, streams_stream, streams_streamsource CASCADE"
        )

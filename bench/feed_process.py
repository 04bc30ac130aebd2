"""`python -m bench.feed_process OUT.json`: the feed benchmark (bench.feed_queries) in a
process of its own, started by `python -m bench.run feed` with DATABASE_URL pointing at the
feed database. Writes the figures to OUT.json."""

import json
import sys
from pathlib import Path

import django
from django.core.management import call_command

from bench.common import ensure_database


def main() -> None:
    ensure_database()
    django.setup()
    # Imported here, not at the top: bench.feed_queries and the seed import models, which
    # need django.setup(), and the database must exist before that.
    from bench.feed_queries import bench_feed_queries

    call_command("migrate", verbosity=0)
    result = bench_feed_queries()
    Path(sys.argv[1]).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

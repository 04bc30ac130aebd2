#!/usr/bin/env bash
# Checks the import layers, then runs the whole suite against the real services. DynamoDB
# Local is started by the test session.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shardwatch}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"

# The browser tests drive Debian's Chromium (tests/browser/conftest.py); Playwright's own
# browser download cannot be used, so Chromium comes from apt.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "Installing Chromium for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends chromium
  else
    echo "The browser tests need Debian's Chromium. Install it, then run make test again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium" >&2
    exit 1
  fi
fi

# The Prometheus rules and scrape config are checked with promtool (tests/config/test_prometheus.py),
# from Debian's prometheus package; installing it does not start a Prometheus.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "Installing promtool (Debian's prometheus package) for the Prometheus rules tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends prometheus
  else
    echo "The Prometheus rules tests need promtool. Install it, then run make test again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus" >&2
    exit 1
  fi
fi

.venv/bin/python - <<'PY'
import os, sys
import psycopg, redis
problems = []
try:
    redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=2).ping()
except Exception as exc:
    problems.append(f"Redis at {os.environ['REDIS_URL']} does not answer ({exc}).\n  Start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no")
try:
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    psycopg.connect(url, connect_timeout=3).close()
except Exception as exc:
    problems.append(f"PostgreSQL at {os.environ['DATABASE_URL']} does not answer ({exc}).\n  Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
if problems:
    sys.exit("\n".join(problems))
PY

# The layers (.importlinter): an import that points up fails here, naming the contract.
.venv/bin/lint-imports --no-cache --no-logo

exec .venv/bin/pytest "$@"

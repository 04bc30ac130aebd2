#!/usr/bin/env bash
# Checks the import layers, then runs the whole suite against the real services. DynamoDB
# Local is started by the test session.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shardwatch}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"

# apt_ensure COMMAND PACKAGE WHAT: installs Debian's PACKAGE with apt when COMMAND is missing
# (as root), or stops and prints the command to run.
apt_ensure() {
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "Installing $2 for $3"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "$2"
  else
    echo "$3 need Debian's $2. Install it, then run make test again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $2" >&2
    exit 1
  fi
}

# The browser tests drive Debian's Chromium (tests/browser/conftest.py); Playwright's own
# browser download cannot be used, so Chromium comes from apt.
apt_ensure /usr/bin/chromium chromium "the browser tests"
# The Prometheus rules and scrape config are checked with promtool (tests/config/test_prometheus.py),
# from Debian's prometheus package; installing it does not start a Prometheus.
apt_ensure promtool prometheus "the Prometheus rules tests"

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

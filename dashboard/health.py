"""Readiness: whether this deployment can do its work now, for /readyz (a load balancer, a
Kubernetes readinessProbe, an uptime check).

What must stay true:
- An answer never holds item data, URLs or credentials: a failed check says which service
  failed and the exception's class; the full error goes to the log, where the operator reads it.
- Every check runs, even after one fails, so one answer names every service that is down.
- Each check is bounded in time: Redis gets REDIS_TIMEOUT_S to connect and to answer; the
  database is asked one query over the connection Django already has, which PostgreSQL ends
  after DATABASE_TIMEOUT_S (statement_timeout, set for the check's own transaction only, so
  the connection goes back to other requests as it was). SQLite answers from a local file,
  with no server to wait for: nothing to bound there. Opening a connection, where none is open,
  is bounded by the driver: libpq's connect_timeout, given in DATABASE_URL's query string.
"""

import logging
from datetime import datetime

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from meters.heartbeats import HEARTBEAT_ALIVE_S, ROLES, heartbeats_by_role

log = logging.getLogger(__name__)

# A probe is typically given 1 s (Kubernetes' default timeoutSeconds); Redis on a closed port
# refuses at once, one that does not answer would otherwise hang the probe.
REDIS_TIMEOUT_S = 0.5
# The same for the database's query: a server that takes longer is not ready.
DATABASE_TIMEOUT_S = 0.5


def _database_check() -> dict:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # SET takes no bind parameters; the value is this module's own integer.
            cursor.execute(f"SET LOCAL statement_timeout = {int(DATABASE_TIMEOUT_S * 1000)}")
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def _redis_check(*, redis_url: str) -> dict:
    client = redis.Redis.from_url(
        redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # redis-py retries 3 times by default; a probe has no time for it
    )
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True}


def _heartbeat_check(*, role: str, roles: dict, within_s: float, now: datetime) -> dict:
    seen = roles[role]
    if seen["alive"]:
        return {"ok": True, "alive": seen["alive"], "newest_age_s": round((now - seen["seen_at"]).total_seconds(), 1)}
    reason = f"no {role} process has written a heartbeat in the last {within_s:g} s"
    if seen["seen_at"] is not None:
        reason += f" (the newest is {(now - seen['seen_at']).total_seconds():.0f} s old)"
    return {"ok": False, "reason": reason}


def readiness_check(*, redis_url: str | None = None, within_s: float = HEARTBEAT_ALIVE_S) -> dict:
    """Check the database (one query), Redis (PING on `redis_url`, REDIS_URL when None), and
    that a process of each role of meters.heartbeats.ROLES (a worker: triggers, discovery,
    dispatch, alert sends; a reader: the streams; beat: the schedule) has written a heartbeat
    within `within_s` seconds, each role checked on its own.

    Returns {"ready": bool, "checks": {name: check}} with the names "database", "redis",
    "worker", "reader" and "beat"; a check is {"ok": True, ...} or {"ok": False, "reason": str}.
    A role's check that passes adds "alive" (how many processes) and "newest_age_s". Raises nothing:
    a check that raises has failed.
    """
    now = timezone.now()
    redis_url = settings.REDIS_URL if redis_url is None else redis_url
    checks = {}
    roles = {}

    def heartbeat_check(role):
        # One query answers every role's check; a failed one fails each of them.
        if not roles:
            roles.update(heartbeats_by_role(now=now, alive_within_s=within_s))
        return _heartbeat_check(role=role, roles=roles, within_s=within_s, now=now)

    for name, check, what in [
        ("database", _database_check, "the database did not answer a query"),
        ("redis", lambda: _redis_check(redis_url=redis_url), "Redis did not answer PING"),
        *[(role, lambda role=role: heartbeat_check(role), f"the {role} heartbeats could not be read") for role in ROLES],
    ]:
        try:
            checks[name] = check()
        except Exception as exc:
            # The message may name hosts or users; only the log gets it.
            log.warning("readyz: %s check failed", name, exc_info=True)
            checks[name] = {"ok": False, "reason": f"{what} ({type(exc).__name__})"}
    if not checks["database"]["ok"]:
        # A query that failed leaves the connection unusable for the next probe on this thread.
        connection.close_if_unusable_or_obsolete()
    return {"ready": all(check["ok"] for check in checks.values()), "checks": checks}

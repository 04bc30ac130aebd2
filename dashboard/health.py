"""Readiness: whether this deployment can do its work now, for /readyz (a load balancer, a
Kubernetes readinessProbe, an uptime check).

What must stay true:
- An answer never holds item data, URLs or credentials: a failed check says which service
  failed and the exception's class; the full error goes to the log, where the operator reads it.
- Every check runs, even after one fails, so one answer names every service that is down.
- Each check is bounded in time: Redis gets REDIS_TIMEOUT_S to connect and to answer; the
  database is asked one query over the connection Django already has.
"""

import logging
from datetime import datetime

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from django.conf import settings
from django.db import connection
from django.utils import timezone

from meters.heartbeats import heartbeats_alive
from meters.models import Heartbeat

log = logging.getLogger(__name__)

# The figure: a worker, and beat, must have written a heartbeat within the last 30 s.
# Each writes one every SHARDWATCH_HEARTBEAT_S (10 s), so two may be missed before this fails.
HEARTBEAT_WITHIN_S = 30.0
# A probe is typically given 1 s (Kubernetes' default timeoutSeconds); Redis on a closed port
# refuses at once, one that does not answer would otherwise hang the probe.
REDIS_TIMEOUT_S = 0.5


def _database_check() -> dict:
    with connection.cursor() as cursor:
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


def _heartbeat_check(*, role: str, within_s: float, now: datetime) -> dict:
    alive = heartbeats_alive(role=role, within_s=within_s, now=now)
    if alive:
        return {"ok": True, "alive": len(alive), "newest_age_s": round((now - alive[0].seen_at).total_seconds(), 1)}
    newest = Heartbeat.objects.filter(role=role).order_by("-seen_at").first()
    reason = f"no {role} process has written a heartbeat in the last {within_s:g} s"
    if newest is not None:
        reason += f" (the newest is {(now - newest.seen_at).total_seconds():.0f} s old)"
    return {"ok": False, "reason": reason}


def readiness_check(*, redis_url: str | None = None, within_s: float = HEARTBEAT_WITHIN_S) -> dict:
    """Check the database (one query), Redis (PING on `redis_url`, REDIS_URL when None), that
    a Celery worker and beat (meters.heartbeats) have each written a heartbeat within
    `within_s` seconds.

    Returns {"ready": bool, "checks": {name: check}} with the names "database", "redis",
    "worker" and "beat"; a check is {"ok": True, ...} or {"ok": False, "reason": str}. A worker
    check that passes adds "alive" (how many processes) and "newest_age_s". Raises nothing:
    a check that raises has failed.
    """
    now = timezone.now()
    redis_url = settings.REDIS_URL if redis_url is None else redis_url
    checks = {}
    for name, check, what in [
        ("database", _database_check, "the database did not answer a query"),
        ("redis", lambda: _redis_check(redis_url=redis_url), "Redis did not answer PING"),
        ("worker", lambda: _heartbeat_check(role=Heartbeat.Role.WORKER, within_s=within_s, now=now),
         "the worker heartbeats could not be read"),
        ("beat", lambda: _heartbeat_check(role=Heartbeat.Role.BEAT, within_s=within_s, now=now),
         "the beat heartbeats could not be read"),
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

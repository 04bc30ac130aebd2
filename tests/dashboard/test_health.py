"""/healthz and /readyz: no login, readiness from the real database, Redis, and the heartbeats of
real Celery worker and beat processes started here."""

import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from meters.models import Heartbeat
from tests.support.dynamodb_local import free_port
from tests.support.processes import Processes, wait_for


def test_it_answers_healthz_without_a_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_it_answers_readyz_to_a_probe_without_a_login_or_browser_headers(client):
    # A curl or Kubernetes probe: no cookie, no Fetch Metadata, no Origin.
    response = client.get("/readyz", HTTP_USER_AGENT="kube-probe/1.31")
    assert response.status_code == 503  # no worker runs here: it checked, and did not redirect to a login
    assert set(response.json()["checks"]) == {"database", "redis", "worker", "reader", "beat"}


@pytest.mark.django_db
def test_it_names_stale_heartbeats_of_the_worker_and_beat(client):
    long_ago = timezone.now() - timedelta(seconds=90)
    Heartbeat.objects.create(process="celery@gone:1", role=Heartbeat.Role.WORKER, seen_at=long_ago)
    Heartbeat.objects.create(process="beat@gone:2", role=Heartbeat.Role.BEAT, seen_at=long_ago)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["redis"] == {"ok": True}
    assert body["checks"]["worker"] == {
        "ok": False, "reason": "no worker process has written a heartbeat in the last 30 s (the newest is 90 s old)",
    }
    assert body["checks"]["reader"] == {"ok": False, "reason": "no reader process has written a heartbeat in the last 30 s"}
    assert body["checks"]["beat"]["reason"].startswith("no beat process has written a heartbeat in the last 30 s")


@pytest.mark.django_db
def test_it_names_redis_when_it_does_not_answer_without_showing_its_url(client, settings):
    now = timezone.now()
    Heartbeat.objects.create(process="celery@here:1", role=Heartbeat.Role.WORKER, seen_at=now)
    Heartbeat.objects.create(process="reader@here:3", role=Heartbeat.Role.WORKER, seen_at=now,
                             queues=settings.SHARDWATCH_READER_QUEUE)
    Heartbeat.objects.create(process="beat@here:2", role=Heartbeat.Role.BEAT, seen_at=now)
    settings.REDIS_URL = f"redis://:not-for-your-eyes@127.0.0.1:{free_port()}/0"  # nothing listens there

    response = client.get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"] == {"ok": False, "reason": "Redis did not answer PING (ConnectionError)"}
    assert checks["worker"]["ok"] and checks["reader"]["ok"] and checks["beat"]["ok"] and checks["database"]["ok"]
    assert b"not-for-your-eyes" not in response.content
    assert b"127.0.0.1" not in response.content


@pytest.mark.django_db(transaction=True)
def test_it_is_ready_while_a_real_worker_reader_and_beat_run_and_checks_the_worker_and_reader_apart(client, tmp_path):
    processes = Processes()
    try:
        worker = processes.worker("ready-worker", concurrency=1)
        processes.reader("ready-reader")
        processes.beat(tmp_path / "beat-schedule", name="ready-beat")
        assert wait_for(lambda: client.get("/readyz").status_code == 200, timeout=60), client.get("/readyz").json()
        checks = client.get("/readyz").json()["checks"]
        assert checks["worker"]["alive"] == 1 and checks["reader"]["alive"] == 1 and checks["beat"]["alive"] == 1
        assert checks["worker"]["newest_age_s"] <= 30

        # The worker (triggers, discovery, dispatch, alert sends) stops; the reader lives on.
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        body = client.get("/readyz").json()
        assert body["ready"] is False
        assert body["checks"]["worker"] == {"ok": False, "reason": "no worker process has written a heartbeat in the last 30 s"}
        assert body["checks"]["reader"]["ok"] and body["checks"]["reader"]["alive"] == 1

        # And the reverse: a worker alone does not make a reader.
        processes.worker("ready-worker-2", concurrency=1)
        reader = processes.started[1]
        os.killpg(reader.pid, signal.SIGTERM)
        reader.wait(timeout=30)
        assert wait_for(lambda: client.get("/readyz").json()["checks"]["worker"]["ok"], timeout=60)
        body = client.get("/readyz").json()
        assert body["ready"] is False
        assert body["checks"]["reader"] == {"ok": False, "reason": "no reader process has written a heartbeat in the last 30 s"}
    finally:
        processes.stop_all()

    # A worker that stops cleanly removes its row; beat's is left to go stale.
    assert not Heartbeat.objects.filter(role=Heartbeat.Role.WORKER).exists()


@pytest.mark.django_db(transaction=True)
def test_it_sees_a_beat_that_lives_but_cannot_schedule_go_stale(client, tmp_path):
    # Beat's broker does not answer: the first entry due (dispatch, every second here) blocks
    # in its publish, retrying the connection, while the process lives on. Only a heartbeat
    # written by the scheduler's loop can tell.
    processes = Processes(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", SHARDWATCH_DISPATCH_INTERVAL_S="1")
    try:
        beat = processes.beat(tmp_path / "beat-schedule", name="hung-beat")
        assert wait_for(lambda: Heartbeat.objects.filter(role=Heartbeat.Role.BEAT).exists(), timeout=60)

        # Heartbeats come every 2 s (SHARDWATCH_HEARTBEAT_S of Processes) while beat schedules.
        assert wait_for(lambda: client.get("/readyz").json()["checks"]["beat"]["newest_age_s"] > 8, timeout=30), \
            client.get("/readyz").json()["checks"]["beat"]
        assert beat.poll() is None
    finally:
        processes.stop_all()

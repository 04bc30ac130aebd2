"""Real Celery worker and beat processes for tests that kill and restart them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def database_url() -> str:
    """The test database the current test sees, as a URL for a child process."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        raise RuntimeError("Worker-process tests need PostgreSQL: a child process cannot see an in-memory SQLite DB.")
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class Processes:
    def __init__(self, **overrides: str):
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(),
                    "SHARDWATCH_METERS_FLUSH_S": "1", "SHARDWATCH_HEARTBEAT_S": "2", **overrides}
        self.started: list[subprocess.Popen] = []
        ARTIFACTS.mkdir(exist_ok=True)
        # Leftover messages from an earlier run would carry stale leases' tasks; start clean.
        redis.Redis.from_url(settings.REDIS_URL).delete(self.env["CELERY_QUEUE"], f"{self.env['CELERY_QUEUE']}.readers")

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(ARTIFACTS / f"{name}.log", "wb")
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "config", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, so that a kill -9 reaches the worker and its pool children.
            start_new_session=True,
        )
        self.started.append(process)
        return process

    # `loglevel`: INFO for tests, whose logs are read after a failure; benchmarks that count a
    # process's CPU pass the Procfile's WARNING, so that no per-task log line is counted.

    def worker(self, name: str, *, concurrency: int = 2, loglevel: str = "INFO") -> subprocess.Popen:
        return self._start(
            name,
            ["worker", "-n", f"{name}@%h", "-Q", self.env["CELERY_QUEUE"], f"--concurrency={concurrency}",
             f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"],
        )

    def reader(self, name: str, *, concurrency: int = 1, loglevel: str = "INFO") -> subprocess.Popen:
        """A worker for the stream readers' queue only, as the Procfile's `reader`."""
        return self._start(
            name,
            ["worker", "-n", f"{name}@%h", "-Q", f"{self.env['CELERY_QUEUE']}.readers", f"--concurrency={concurrency}",
             "--disable-prefetch", f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"],
        )

    def beat(self, schedule: Path, *, name: str = "beat", loglevel: str = "INFO", quiet: bool = False) -> subprocess.Popen:
        """Celery beat. `quiet`: without the banner it prints before logging starts (`celery -q`)."""
        return self._start(name, [*(["-q"] if quiet else []), "beat", f"--loglevel={loglevel}", "--schedule", str(schedule)])

    @staticmethod
    def kill_hard(process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.started:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def wait_for(condition, *, timeout, interval=0.2):
    """Poll condition until it is true or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()

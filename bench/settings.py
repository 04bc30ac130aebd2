"""Benchmark settings: the real settings on a database of their own."""

import os

os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-that-is-long-enough-0123456789")
os.environ.setdefault("CELERY_QUEUE", f"shardwatch-bench-{os.getpid()}")
os.environ.setdefault("CHANNEL_PREFIX", f"shardwatch-bench-{os.getpid()}")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from config.settings import *  # noqa: E402,F403

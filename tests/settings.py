"""Test settings: the real settings, with environment defaults that point at this machine's
services. Anything set in the environment wins, so CI can point elsewhere."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shardwatch")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-that-is-long-enough-0123456789")
os.environ.setdefault("CELERY_QUEUE", f"shardwatch-test-{os.getpid()}")
os.environ.setdefault("CHANNEL_PREFIX", f"shardwatch-test-{os.getpid()}")
# No test reaches AWS. A Lambda call that a test does not point at moto or a server of its own
# (discovery asks Lambda for the event source mappings of every stream not on DynamoDB Local, and
# the fake Streams API's streams have AWS's ARNs) is refused at once: nothing listens on the
# discard port.
# The test process counts meters in memory until a test calls meters_flush(): a flushing thread
# would write outside the test's transaction. Processes a test starts (tests/support/processes.py)
# set their own interval, so their counts arrive within a second.
os.environ.setdefault("SHARDWATCH_METERS_FLUSH_S", "0")
os.environ.setdefault("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:9")

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Lets two suites run side by side on one server (a developer's run and CI, say).
DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get("TEST_DATABASE_NAME", "test_shardwatch")  # noqa: F405

# Django's flush between transactional tests truncates every table; the audit tables refuse
# TRUNCATE unless the session allows it (audit/migrations/0004_truncate_and_head_guard.py).
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c shardwatch.audit_allow_truncate=on"  # noqa: F405

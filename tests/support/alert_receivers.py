"""What receives alerts in tests: a webhook receiver (one for the signed webhook and the Slack
channel alike) on tests/support/http_servers.py, and a real SMTP server (aiosmtpd) for email."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller

from tests.support.dynamodb_local import free_port
from tests.support.http_servers import QuietHandler, http_server
from workers.targets.webhook import webhook_signature


class AlertHandler(QuietHandler):
    """Keeps every POST as {"path", "headers", "body" (bytes), "json", "at" (time.time() when it
    arrived)} in server.received and answers server.status (200 unless the test sets another)."""

    def do_POST(self):
        arrived = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.received.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                         "json": json.loads(body), "at": arrived})
        self.answer(self.server.status, b"{}" if self.server.status < 300 else b'{"error": "down"}')


@contextmanager
def alert_receiver() -> Iterator:
    """An HTTP server that keeps what it is sent; `.url`, `.received`, `.status`."""
    with http_server(AlertHandler, received=[], status=200, lock=threading.Lock()) as server:
        yield server


def signature_valid(*, secret: str, request: dict) -> bool:
    """Whether a received request carries the signature of its body under `secret`."""
    headers = request["headers"]
    expected = webhook_signature(secret=secret, timestamp=headers["X-Shardwatch-Timestamp"], body=request["body"])
    return headers["X-Shardwatch-Signature"] == expected


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"to": list(envelope.rcpt_tos),
                              "message": message_from_bytes(envelope.content, policy=policy.default)})
        return "250 Message accepted for delivery"


@contextmanager
def smtp_inbox() -> Iterator:
    """A real SMTP server on a free port of 127.0.0.1; `.port`, `.messages` ({"to", "message"})."""
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()

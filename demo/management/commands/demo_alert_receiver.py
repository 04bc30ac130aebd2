"""`manage.py demo_alert_receiver`: the demo's alert channel. It serves the webhook that the
demo's alert rule sends to, checks each alert's signature with the channel's secret (the
check any receiver would make; workers/targets/webhook.py shows it) and prints the alert."""

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from alerts.models import Channel
from demo.provision import DEMO_ALERT_CHANNEL
from workers.targets.webhook import WebhookSecretUnreadable, webhook_secret_decrypt, webhook_signature


def signature_check(*, headers, body: bytes) -> str:
    """"valid", or why the signature does not check out."""
    close_old_connections()
    channel = Channel.objects.filter(name=DEMO_ALERT_CHANNEL).first()
    if channel is None:
        return f"no channel {DEMO_ALERT_CHANNEL!r} to check it against"
    try:
        secret = webhook_secret_decrypt(channel.secret_encrypted)
    except WebhookSecretUnreadable as exc:
        return str(exc)
    timestamp = headers.get("X-Shardwatch-Timestamp", "")
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return "valid" if headers.get("X-Shardwatch-Signature") == expected else "INVALID signature"


class Command(BaseCommand):
    help = "Serve the demo's alert webhook and print every alert it receives."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8766)

    def handle(self, *args, port, **options):
        out = self.stdout

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                check = signature_check(headers=self.headers, body=body)
                try:
                    alert = json.loads(body)
                    line = f"{alert['kind'].upper()} {alert['alert']}: {alert['summary']} (signature {check})"
                except (ValueError, KeyError, TypeError):
                    line = f"not an alert: {body[:200]!r} (signature {check})"
                out.write(line)
                out.flush()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        # serve_forever runs here; a signal stops it from another thread (shutdown waits for it).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown).start())
        out.write(f"Printing the alerts sent to http://127.0.0.1:{port}/alerts")
        out.flush()
        server.serve_forever()
        server.server_close()

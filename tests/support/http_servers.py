"""The small HTTP servers that tests start at the network edge (a webhook receiver, Lambda's
API, another site on the same host): a quiet request handler that answers in one call, and the
server run in a thread while a block runs."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that logs nothing; subclasses define do_GET / do_POST and answer with
    `answer` (bytes) or `answer_json` (a document)."""

    def answer(self, status: int, body: bytes, *, content_type: str = "application/json", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def answer_json(self, status: int, document, headers: dict | None = None):
        self.answer(status, json.dumps(document).encode(), headers=headers)

    def log_message(self, *args):
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler], **state) -> Iterator[ThreadingHTTPServer]:
    """`handler` served on a free port of 127.0.0.1, in a thread, while the block runs. `state`
    is set as attributes of the server, where the handler reads it (self.server.mode, ...);
    the server's `url` is http://127.0.0.1:PORT."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    for name, value in state.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
